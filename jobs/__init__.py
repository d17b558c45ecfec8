"""vidjobs job domain: edit specs, job keys, states, storage and the HTTP API."""
