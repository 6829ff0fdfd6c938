// ParleyStore: placeholder until its issue lands.
