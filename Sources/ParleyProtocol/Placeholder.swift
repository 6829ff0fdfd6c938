// ParleyProtocol: placeholder until its issue lands.
