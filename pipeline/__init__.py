"""stance: paragraph-level stance on China–US cooperation (favor / against / none)."""

LABELS = ("favor", "against", "none")
