"""The six pages of the main window.

Contract every page follows (so :mod:`desktop.main_window` can build them lazily):

* a ``QWidget`` subclass named ``<Name>Page`` in ``desktop/pages/<name>.py`` — ``ChatPage``,
  ``ComparePage``, ``MemoryPage``, ``AnnotatePage``, ``StudiesPage``, ``ModelsPage``;
* constructed as ``Page(ctx)`` with ``ctx`` the shared :class:`desktop.context.AppContext`
  (settings, current study path and ``study_changed`` signal, the engine client, navigation);
* optional ``on_shown()`` — called each time the page becomes the visible one;
* optional ``can_close() -> bool`` — asked before the window closes (unsaved work).

A page is built the first time it is shown, so the window opens without importing what a page
needs (matplotlib for the memory graph, the annotation core for Studies).
"""

PAGES = (
    # (key, title, module, class name)
    ("chat", "Chat", "desktop.pages.chat", "ChatPage"),
    ("compare", "Compare", "desktop.pages.compare", "ComparePage"),
    ("memory", "Memory", "desktop.pages.memory", "MemoryPage"),
    ("annotate", "Annotate", "desktop.pages.annotate", "AnnotatePage"),
    ("studies", "Studies", "desktop.pages.studies", "StudiesPage"),
    ("models", "Models", "desktop.pages.models", "ModelsPage"),
)
