// ParleyServer: placeholder until its issue lands.
