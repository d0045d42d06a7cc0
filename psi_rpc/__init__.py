"""gRPC plumbing both services share: status mapping, TLS credentials, server factory."""
