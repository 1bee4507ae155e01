from engine.systems.registry import Option, SystemRecord


def build(models, options):
    from .agent import ParrotAgent

    agent = ParrotAgent(options["prefix"])
    agent.heard = models.shared("parrot:heard", dict)  # one per worker, shared by every parrot agent
    return agent


RECORDS = [SystemRecord(name="parrot", label="Parrot (test)", help="repeats what the partner said",
                        needs=frozenset(), keeps_memory=False, capabilities=frozenset({"rewind"}),
                        options=(Option("prefix", str, "you said:", "what the parrot says first"),),
                        build=build, order=999)]
