"""Point-to-point routing by rule: which change of which resource goes to which partner system."""
