"""One router per resource: recommendations, items, members, events, models, health."""
