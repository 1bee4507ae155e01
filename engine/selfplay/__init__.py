"""Four-instance self-play (EMMA paper §5.3): episodes for the model-quality study (Table 4)."""
