"""Knowledge distillation: a trained model (an ensemble, say) teaches a new network of the
project's own architecture, which then answers as fast as any single network.

``python -m common distill emojify --teacher RUN`` (or ``train`` with ``--set
distill.teacher=RUN``) trains the project's model as ``train`` does (its run folder,
checkpoints, ``--resume``, plots and test score), with one change: the loss. On every batch, the
same augmented faces the student sees also go through the teacher, in inference mode, and the
student learns from both (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network")::

    loss = alpha * cross_entropy(labels, student)
         + (1 - alpha) * temperature**2 * KL(soften(teacher) || soften(student))

where ``soften(p) = softmax(log(p) / temperature)``: the probabilities flattened, so the student
also learns which wrong answers the teacher finds likely ("this fear looks a little surprised").
The ``temperature**2`` keeps the soft part's gradients the size of the labels' part.

:class:`Distiller` is a Keras ``Model`` whose ``compute_loss`` adds the teacher's part (the
keras-io "Knowledge Distillation" example's way, which works on every backend). Its checkpoints
hold the student's weights only; the teacher is loaded again from its file when a run resumes.
The run's ``model.keras`` is the student alone: predict, evaluate, serve and ensemble take it
like any model and never need the teacher.

The teacher must have been trained on the student's split: its soft targets on a face it was
tested on would otherwise carry the test labels into the student's training.
"""

from __future__ import annotations

from pathlib import Path

import keras

from common.core import runs
from common.core.config import Config, distilling, split_settings
from common.core.errors import UserError
from common.core.project import Project


def soften(probabilities, temperature: float):
    """Log-probabilities ``log(softmax(log(p) / temperature))``: the same as softening the logits
    behind ``p`` (they differ from ``log(p)`` by a constant per example, which softmax ignores)."""
    ops = keras.ops
    logits = ops.log(ops.clip(probabilities, 1e-7, 1.0)) / temperature
    return logits - ops.logsumexp(logits, axis=-1, keepdims=True)


def soft_target_loss(teacher_probabilities, student_probabilities, temperature: float):
    """The batch's mean ``KL(soften(teacher) || soften(student))``, times ``temperature**2``."""
    ops = keras.ops
    teacher_log = soften(teacher_probabilities, temperature)
    student_log = soften(student_probabilities, temperature)
    divergence = ops.sum(ops.exp(teacher_log) * (teacher_log - student_log), axis=-1)
    return ops.mean(divergence) * temperature**2


@keras.saving.register_keras_serializable(package="common")
class Distiller(keras.Model):
    """The student, trained with the teacher's soft targets added to its compiled loss.

    Args:
        student: the network being trained (it is what ``call`` runs).
        teacher_file: the teacher's ``.keras`` file; loaded here unless ``teacher`` is given.
        temperature: how much both networks' probabilities are softened (1 = not at all).
        alpha: the weight of the compiled (labels') loss; the soft targets' weighs ``1 - alpha``.
        teacher: the teacher model itself, already loaded.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher_file: str,
        temperature: float = 4.0,
        alpha: float = 0.1,
        teacher: keras.Model | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.student = student
        self.teacher_file = str(teacher_file)
        self.temperature, self.alpha = float(temperature), float(alpha)
        if teacher is None:
            teacher = load_teacher(Path(teacher_file))
        teacher.trainable = False
        # Outside Keras' tracking: the teacher's weights stay out of the checkpoints, the optimizer
        # and the seed states, which are the student's alone.
        object.__setattr__(self, "teacher", teacher)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels_loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        teacher = self.teacher(x, training=False)
        soft = soft_target_loss(teacher, y_pred, self.temperature)
        return self.alpha * labels_loss + (1.0 - self.alpha) * soft

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher_file": self.teacher_file,
            "temperature": self.temperature,
            "alpha": self.alpha,
        }

    @classmethod
    def from_config(cls, config: dict) -> Distiller:
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"))
        return cls(student, **config)


def load_teacher(model_file: Path) -> keras.Model:
    """The teacher's model, for inference; one line when its file is gone or damaged."""
    from common.serving.loading import load_model_file  # Keras' loader with its safety checks.

    if not model_file.is_file():
        raise UserError(
            f"the teacher {model_file} is gone; put it back to go on distilling (its config names it in "
            "distill.teacher)"
        )
    return load_model_file(model_file, compile=False)


def pin_teacher(project: Project, config: Config) -> Config:
    """The config with ``distill.teacher`` resolved to the teacher's model file (a run folder,
    ``latest`` or ``pretrained`` would name another model later, and a resumed run must find
    the same one), after checking it was trained on the split this config makes.

    Raises:
        UserError: the teacher is not found, has no config, or was trained on another split.
    """
    if not distilling(config):
        return config
    model_file, config_file = runs.resolve_model(project.name, config.distill.teacher)
    if config_file is None:
        raise UserError(
            f"the teacher {model_file} has no config.toml beside it, so nothing says which split it was "
            "trained on; pass its run folder"
        )
    teacher_config = project.load_config(config_file, check_paths=False)
    ours, theirs = split_settings(config), split_settings(teacher_config)
    differ = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
    if differ:
        key = differ[0]
        raise UserError(
            f"the teacher {model_file} was trained on another split ({key}: {theirs.get(key)!r} against "
            f"{ours.get(key)!r} here); its soft targets would carry test labels into training. Distil "
            "with the teacher's split settings"
        )
    return config.with_value("distill.teacher", str(model_file))


def check_split_sizes(config: Config, sizes: dict) -> None:
    """The data read holds as many training, validation and test examples as the teacher's did
    (another ``data.path`` may hold other data under the same settings)."""
    recorded = runs.read_metrics(Path(config.distill.teacher).parent)
    for key, value in sizes.items():
        if key in recorded and recorded[key] != value:
            raise UserError(
                f"the data read gives {key}={value}, the teacher {config.distill.teacher} was trained with "
                f"{key}={recorded[key]}; distil on the data the teacher was trained on"
            )


def wrap(student: keras.Model, config: Config) -> keras.Model:
    """The model to train: a :class:`Distiller` around ``student`` when the config names a
    teacher, else ``student`` itself."""
    if not distilling(config):
        return student
    teacher = load_teacher(Path(config.distill.teacher))
    if tuple(teacher.output_shape) != tuple(student.output_shape):
        raise UserError(
            f"the teacher {config.distill.teacher} gives outputs of shape {teacher.output_shape}, this "
            f"network {student.output_shape}; a teacher must answer the same question"
        )
    return Distiller(
        student,
        config.distill.teacher,
        temperature=config.distill.temperature,
        alpha=config.distill.alpha,
        teacher=teacher,
        name=f"{student.name}_distiller",
    )


def student_of(model: keras.Model) -> keras.Model:
    """The network a run keeps: a distiller's student, or the model itself."""
    return model.student if isinstance(model, Distiller) else model
