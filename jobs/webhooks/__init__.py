"""Webhooks on the Standard Webhooks spec: endpoints per tenant, deliveries, attempts.

The domain side (statements, signing, the service behind `/v1/webhooks`). The dispatcher
that fans events out to deliveries and sends them is `workers.webhooks`.
"""
