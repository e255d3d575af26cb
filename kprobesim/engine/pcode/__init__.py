"""pcode."""
