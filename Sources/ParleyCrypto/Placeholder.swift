// ParleyCrypto: placeholder until its issue lands.
