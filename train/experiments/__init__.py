"""Experiment and benchmark commands, kept apart from the trainer (they use it; it never
imports them):

    table3        per-step cost and memory of each MTL method (the paper's Table 3)
    table4        the MTL methods' accuracy over seeds (the paper's Table 4)
    aux_table     auxiliary segmentation / depth tasks against pose only
    attention     Grad-CAM++ maps of the regression
    recall        retrieval recall@k against the oracle
    sevenscenes   the 7-Scenes protocol (train per scene, test on its test split)
"""
