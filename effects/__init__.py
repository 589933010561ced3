"""dripstream: effects — carry out effect commands at most once (ledger, Twilio, SendGrid,
signed webhooks, power-dialer lists) and turn the providers' callbacks into events."""
