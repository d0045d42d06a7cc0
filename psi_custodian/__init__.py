"""The tax custodian's service: holds the epoch key and the encrypted index, answers queries."""
