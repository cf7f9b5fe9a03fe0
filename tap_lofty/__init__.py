"""tap-lofty: a Singer tap for the Lofty real-estate CRM."""
