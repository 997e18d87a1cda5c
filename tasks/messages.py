"""Messages for people, kept with their figures apart, so that a page can say them in its reader's language.

No Django here: the media checks (tasks/imagery.py, tasks/video.py) stay pure. A message is raised in English
(command lines, logs, jobs and the API read it as it is); the researcher's pages translate its template and
fill in the same figures (frontend/views_researcher.py, `said`). The templates are in the French catalogue.
"""

from __future__ import annotations

from typing import Any


def N_(template: str) -> str:
    """Marks a message template for translation (the way gettext_noop does), without importing Django."""
    return template


class Explained(ValueError):
    """A one-line message: ``template % figures`` (the template alone when there are none)."""

    def __init__(self, template: str, /, **figures: Any) -> None:
        self.template = template
        self.figures = figures
        text = template % figures if figures else template
        super().__init__(" ".join(str(text).split()))
