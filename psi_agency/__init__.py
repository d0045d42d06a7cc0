"""The immigration agency's service: stores subjects, runs queries, keeps the matches."""
