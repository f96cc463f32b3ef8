"""Forwarding: pushing a share's de-identified copy into the partner institution's own Orthanc.

`service.start` (origin only) creates a `Forwarding` and queues
`imaging.forward_share_task`; `service.forward` is the task body. Every
instance confirmed stored at the partner is recorded (`ForwardedInstance`) in a
transaction of its own, so a run that stops half-way resumes after the last
confirmed instance and never sends one twice. A partner that cannot be reached
(`StoreUnavailable`) is retried with exponential backoff; the progress (state,
sent/total, attempts, last error) is on the share (`GET .../forwarding`).
Forwarding reads only from the shared copies (`locations.shared_copies`).
"""
