"""The webhook dispatcher (`vidjobs webhooks`): bus events -> owed deliveries -> HTTP attempts."""
