"""Code shared by the WhatsBot functions; deploy.sh copies it into each function's source."""
