"""The privacy layer: consent, erasure, opt-out, retention, access reports, redaction and the audit log.

It sits above the store, the pipeline, ingest and matching, and below the Engine, which composes a
`context.PrivacyContext` (store, audit log, settings, actor, clock, and pipeline/policy/ingest/collection
functions) and hands it to `operations.PrivacyOps`. No module here imports the Engine or anything above it;
parts receive their siblings explicitly (Subjects, OptOuts and Retention get the Eraser; the planner gets
Subjects). Every deletion goes through `deletion.delete_images`; every audit event is a typed `events.Event`
(`actions` lists them), recorded with the actor passed per call.
"""
