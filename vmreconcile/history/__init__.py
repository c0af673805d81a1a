"""Apply history, rollback and the audit trail (``vmreconcile history``, ``rollback``).

``store`` keeps one entry per apply under a root-only directory (crash-safe: an entry is
prepared before the first write and committed after the last); ``files`` reads and restores
the files an apply replaces; ``record`` ties an apply to its entry; ``rollback`` plans and
carries out the return to an entry's "before"; ``origin`` says who applied which
configuration; ``audit`` sends the one syslog line per apply and rollback.
"""
