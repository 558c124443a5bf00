"""Two reviewers on the demo: alice decides Cluster_0 to Cluster_39, bob re-reviews 12 of them.

Run after `clusterqc import --demo && clusterqc propose --judge offline`; the README's
`clusterqc agreement` and `clusterqc export` examples show what this leaves in the database.
Verdicts: A = Acceptable, U = Unacceptable, one letter per cluster.
"""

from clusterqc.model import Verdict
from clusterqc.store import Store

ALICE = "UUUAAAAAAUAAUAUUUAAUAAAAAAUAAAAUAAAAUAAA"  # Cluster_0 .. Cluster_39
BOB = {0: "U", 1: "A", 2: "U", 3: "A", 4: "U", 5: "A", 9: "A", 12: "U", 14: "A", 19: "U", 26: "U", 31: "A"}
VERDICT = {"A": Verdict.ACCEPTABLE, "U": Verdict.UNACCEPTABLE}


def decide(store: Store, reviewer: str, n: int, letter: str) -> None:
    cluster = f"Cluster_{n}"
    proposal = store.proposals_for(cluster)[0]
    store.decide(cluster, reviewer, VERDICT[letter], proposal_id=proposal.id)


with Store() as store:  # $CLUSTERQC_DB, else ./clusterqc.db
    for n, letter in enumerate(ALICE):
        decide(store, "alice", n, letter)
    for n, letter in BOB.items():
        decide(store, "bob", n, letter)
