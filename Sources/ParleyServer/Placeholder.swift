// ParleyServer: in progress
