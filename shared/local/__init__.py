"""local: running the suite on one machine; never shipped in the function package.

cli         the `privacy-functions` command (serve, invoke, migrate, seed-demo, token, retention, audit, ...)
server      every function of serverless.yml on one local HTTP server, CRON scheduler, queue delivery
demo        demo accounts and data for `make run`
"""
