// ParleyTestSupport: placeholder until its issue lands.
