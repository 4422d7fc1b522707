"""Channel-neutral conversations (storefront, merchant) on Incoming/Reply, and thin channel adapters."""
