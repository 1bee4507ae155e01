"""Settings of the published-checkpoint baselines (torch-free: the registry record reads them)."""

#: ReBot's time intervals between sessions, as its released chat loop offers them (Jang et al. 2023).
REBOT_INTERVALS = ("A few hours after", "A few days after", "A few weeks after", "A few months after",
                   "A couple of years after")
#: MSC 2.7B (truncation 1024): the history is cut to the newest 1024 tokens (Xu et al. 2022).
MSC_TRUNCATE = 1024
