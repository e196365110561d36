//! fleetmq-certs: makes a development CA, a server certificate for localhost/127.0.0.1/::1 and a
//! client certificate, for `fleetmq certs --out DIR`. See `certs/README.md` for real certificates.
