"""The embedded default: a YOLOv8n trained on a synthetic shapes data set, shipped with the package so that a
run with no ``--weights`` needs nothing from outside. The data set is drawn from fixed seeds on first use
(``shapes``); ``train_default`` is the script that trained ``yolov8n-shapes.pt`` (its recipe and metrics in
``yolov8n-shapes.json``).

May import: quant.util.
"""

from pathlib import Path

WEIGHTS = Path(__file__).resolve().with_name("yolov8n-shapes.pt")
