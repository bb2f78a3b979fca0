"""Hardware-aware feedback for any network: which blocks waste the NPU, what to use instead.

`ran-edge advise` (see docs/advise.md): sites (`sites`), replacement forms and their cost
graphs (`forms`), the advice itself (`advice`), in-context checks (`context`), rewriting and recovery (`apply`), the
command as a function (`run`) and its table / JSON (`views`).
"""
