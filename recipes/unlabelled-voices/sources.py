"""Where the speech is inside each Debian package this recipe may use, and what language it is in.

Each ``Source`` names its package, the globs (relative to the unpacked package, or to the member list of a zip
inside it) that hold its speech, and how a clip's language follows from its path. Only the packages the project's
data rules allow are here: the English Asterisk prompts (``asterisk-core-sounds-en*``) are held out for outside
measurement, and ``refuse_held_out`` stops them whatever path they come in by.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

HELD_OUT_PACKAGES = ("asterisk-core-sounds-en",)  # every package whose name starts so: never used
HELD_OUT_PATHS = re.compile(r"asterisk/sounds/en(?:[_/-]|$)")  # the English prompts, in any package


@dataclass(frozen=True)
class Source:
    package: str  # Debian package name
    globs: tuple[str, ...]  # speech files inside the unpacked package (fnmatch patterns, "*" crosses "/")
    language: (
        str  # ISO 639-1 code, or "path:<regex>" whose group 1 (mapped through LANGUAGE_NAMES) is the code
    )
    speaker: str = ""  # regex whose group 1 names the voice (a voice pack, a prompt set); "" for none
    zip_member: str = ""  # a zip archive inside the package that holds the globs ("" for plain files)
    skip: str = r"/silence/|/beep\.|/beeperr\."  # paths that hold no speech


# hedgewars voice packs: the plain ones are English-ish (accents and characters); Default_xx are other languages
HEDGEWARS_LANGUAGES = {"es": "es", "pl": "pl", "ru": "ru", "uk": "uk"}

SOURCES = {
    source.package: source
    for source in (
        Source(
            "hedgewars-data",
            ("usr/share/games/hedgewars/Data/Sounds/voices/*/*.ogg",),
            "hedgewars",
            speaker=r"voices/([^/]+)/",
        ),
        Source(
            "warzone2100-data",
            tuple(
                f"audio/{folder}/*.ogg"
                for folder in (
                    "tutorial",
                    "memressp",
                    "extra",
                    "countdown",
                    "taunts",
                    "nexus",
                    "proxmessages",
                    "vtoltalk",
                    "trnsppil",
                    "coltive",
                )
            )
            + ("sequenceaudio/*.ogg",),
            "en",
            zip_member="usr/share/games/warzone2100/base.wz",
        ),
        *(
            Source(
                f"asterisk-core-sounds-{lang}-wav",
                ("usr/share/asterisk/sounds/*.wav",),
                lang,
                speaker=r"sounds/([^/]+)/",
            )
            for lang in ("es", "fr", "it", "ru")
        ),
        Source("asterisk-prompt-es-co", ("usr/share/asterisk/sounds/es/*.gsm",), "es", speaker=r"()"),
        Source("asterisk-prompt-fr-armelle", ("usr/share/asterisk/sounds/fr/*.gsm",), "fr", speaker=r"()"),
        Source(
            "asterisk-prompt-it-menardi-wav",
            ("usr/share/asterisk/sounds/*.wav",),
            "it",
            speaker=r"sounds/([^/]+)/",
        ),
        Source("fillets-ng-data-cs", ("usr/share/games/fillets-ng/sound/*/cs/*.ogg",), "cs"),
        Source("fillets-ng-data-nl", ("usr/share/games/fillets-ng/sound/*/nl/*.ogg",), "nl"),
        Source(
            "klettres-data",
            ("usr/share/klettres/*/alpha/*.ogg", "usr/share/klettres/*/syllab/*.ogg"),
            "path:klettres/([^/]+)/",
            speaker=r"klettres/([^/]+)/",
        ),
    )
}


# Spoken by the voice of the held-out English Asterisk prompts (Allison Smith): left out unless named with
# --packages, so that the outside measurement on those prompts stays a voice the model never heard
SAME_VOICE_AS_HELD_OUT = ("asterisk-core-sounds-es-wav",)
DEFAULT_PACKAGES = tuple(name for name in SOURCES if name not in SAME_VOICE_AS_HELD_OUT)


def refuse_held_out(package: str, path: str = "") -> None:
    """Raise ValueError for a held-out package or file (the English Asterisk prompts)."""
    if package.startswith(HELD_OUT_PACKAGES):
        raise ValueError(
            f"{package} is held out for outside measurement (English Asterisk prompts): never used"
        )
    if path and HELD_OUT_PATHS.search(path):
        raise ValueError(f"{package}: {path} is an English Asterisk prompt, held out: never used")


def speech_paths(source: Source, members: list[str]) -> list[str]:
    """The members (paths relative to the package root or the zip) that hold speech, sorted."""
    chosen = set()
    for pattern in source.globs:
        chosen.update(m for m in members if fnmatch.fnmatchcase(m, pattern))
    return sorted(m for m in chosen if not re.search(source.skip, "/" + m))


def language_of(source: Source, path: str) -> str:
    if source.language == "hedgewars":
        pack = re.search(r"voices/([^/]+)/", path).group(1)
        suffix = pack.rsplit("_", 1)[1] if "_" in pack else ""
        return HEDGEWARS_LANGUAGES.get(suffix, "en")
    if source.language.startswith("path:"):
        match = re.search(source.language[5:], path)
        return match.group(1) if match else "und"
    return source.language


def speaker_of(source: Source, path: str) -> str:
    match = re.search(source.speaker, path) if source.speaker else None
    name = match.group(1) if match and match.group(1) else ""
    return f"{source.package}/{name}" if name else source.package
