// ParleyClient: placeholder until its issue lands.
