"""Sampling profiles: the :class:`Profile` model, the py-spy recorder and the renderers."""

from obskit.profile.model import Frame, Metadata, ProcessMeta, Profile, Sample, ThreadMeta

__all__ = ["Frame", "Metadata", "ProcessMeta", "Profile", "Sample", "ThreadMeta"]
