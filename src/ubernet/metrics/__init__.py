"""Exact evaluators of the seven tasks, reimplemented from the published protocols (see docs/evaluation.md).

Modules: ``bsds`` (boundaries: ODS/OIS/AP), ``correspond`` (exact pixel matching), ``thin`` (MATLAB thinning),
``edge_nms``, ``sbd`` (semantic boundaries), ``saliency``, ``segmentation`` (IoU), ``normals``, ``voc``
(detection AP), ``coco`` (optional pycocotools cross-check), ``files`` / ``scoring`` (``ubernet score``).
Every metric follows ``reset() / update(...) / compute()`` (``ubernet.metrics.base.Metric``).
"""
