"""Which answers Portico may serve again: the response cache's policies, per public model and per tenant."""
