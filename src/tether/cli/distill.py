"""``tether distill``: a student tower trained to match a frozen teacher tower's embeddings."""
from __future__ import annotations

import argparse

from .bind import add_arguments, config_from_args, train_and_print

DESCRIPTION = """\
Distill an aligned teacher into a student encoder for a new modality: on paired data (student
input, teacher input) the student tower learns to put its input where the frozen teacher tower
puts the paired one. Losses (tether.losses): cosine (default), l2, kl (the student's softmax
over the batch's teacher embeddings against the teacher's own), or clip (contrastive binding,
as tether bind). Held-out evaluation uses the teacher's own text classifier (zero-shot) and
retrieval against the teacher's embeddings. One `tether train` run (resume, logs, evaluation);
OUT/model holds the teacher's towers unchanged plus the student.

A student of the teacher's own modality (a smaller image tower) is named <modality>@<tag>
(--modality image@small --tower '{"kind": "vit", ...}'); OUT/student is then a model of its own
whose image tower is the student, beside the teacher's other towers.

Examples:
  tether distill --model demo/model --modality points --data '{"type": "fashion_mnist_points", "augment": true}' \\
      --val-data '{"type": "fashion_mnist_points", "split": "test"}' --loss cosine --out runs/points-distill
"""


def add_parser(sub) -> None:
    p = sub.add_parser("distill", help="train a student tower to match a frozen teacher tower's embeddings",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, anchor_help="the teacher tower (default image)")
    p.add_argument("--loss", default="cosine", choices=("cosine", "l2", "kl", "clip"))
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.bind import export_if_student
    cfg = config_from_args(args)
    code = train_and_print(cfg, args)
    export_if_student(cfg)
    return code
