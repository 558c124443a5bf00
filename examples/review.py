# examples/review.py: the curator's 24 verdicts (notes where she overrode the offline judge)
from clusterqc.model import Verdict
from clusterqc.store import Store

A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE
verdicts = {0: U, 1: (U, "Single words and file-like tokens: nothing describes an image."),
            2: (U, "One listing template repeated: street address plus photo number."), 3: A,
            4: (A, "News headlines and album titles: real, descriptive captions."), 5: A, 6: A, 7: A, 8: A,
            9: (U, "Mostly bare person names and initials; no visual content described."), 10: A, 11: A,
            12: U, 13: A, 14: (U, "Hash-like titles and 'Picture1' outweigh the few real captions."),
            15: U, 16: U, 17: A, 18: A, 19: U, 20: A, 21: A, 22: A, 23: A}
with Store() as store:  # the database of --db's default: $CLUSTERQC_DB, else ./clusterqc.db
    for n, v in verdicts.items():
        verdict, note = v if isinstance(v, tuple) else (v, "")
        proposal = store.proposals_for(f"Cluster_{n}")[0]
        store.decide(f"Cluster_{n}", "maria", verdict, proposal_id=proposal.id, note=note)
