"""Fixtures for the local fakes of S3/SQS (moto server), Resend and Stripe."""
