"""Meta's side: the webhook payload, its signature, the Graph API (send, media), reply parts."""
