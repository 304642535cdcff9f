"""The stable names of the built-in detectors, as used in config, events and block answers.

The vocabulary itself is ``policyproxy.reasons.DetectorName`` (below both ``config`` and ``redaction``);
these tuples are its string views, kept for readers that want plain names.
"""

from policyproxy.reasons import DetectorName

DETECTOR_NAMES: tuple[str, ...] = tuple(d.value for d in DetectorName)
SECRET_DETECTORS: tuple[str, ...] = tuple(d.value for d in DetectorName if d.secret)
PII_DETECTORS: tuple[str, ...] = tuple(d.value for d in DetectorName if not d.secret)
