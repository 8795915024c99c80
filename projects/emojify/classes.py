"""The seven FER2013 emotions: their names and order, defined once for every layout and output.

The order is FER2013's own: the ``emotion`` codes 0-6 of Kaggle's ``fer2013.csv``. The folder
layout (``train/<emotion>/``) names each class by word; :func:`class_index` maps such a folder name
to the same code, so a face gets the same label whichever layout it came from.
"""

from __future__ import annotations

from common.core.errors import UserError

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASS_NAMES)

# Other spellings seen in copies of the folder layout (e.g. "Angry", "surprised", "disgusted").
_ALIASES = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "surprised": "surprise"}


def class_index(folder_name: str) -> int:
    """The FER2013 code of an emotion folder name, case-insensitively.

    Raises:
        UserError: the name is not one of the seven emotions.
    """
    name = folder_name.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in CLASS_NAMES:
        raise UserError(
            f"folder {folder_name!r} is not a FER2013 emotion; expected folders named "
            f"{', '.join(CLASS_NAMES)}"
        )
    return CLASS_NAMES.index(name)
