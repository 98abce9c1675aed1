"""rights: the data subject's rights as operations; export, erasure and consent never import each other.

export/     access and portability (Art. 15, 20): requests, links, run, archive, readme, schema
erasure/    erasure (Art. 17) reconciled with legal retention: registration, plan, strategies, saga, receipt
consent/    consent, objection, restriction (Art. 7, 18, 21): ledger, flags, gpc, unsubscribe, marketing gate
signals     the GPC route guard (Sec-GPC: 1 is an objection to analytics)
"""
