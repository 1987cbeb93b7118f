"""Frozen run script: check fastpath.count_pairs on small public inputs.

This is a quick correctness check only; speed is measured by evaluate.py on
hidden inputs in a separate process.
"""

import sys

from fastpath import count_pairs

# (nums, target, expected number of pairs i < j with nums[i] + nums[j] == target)
PUBLIC_CASES = [
    ([], 0, 0),
    ([5], 10, 0),
    ([1, 2, 3, 4], 5, 2),
    ([1, 1, 1, 1], 2, 6),
    ([0, 0, 0], 0, 3),
    ([-3, 3, 0, 6, -6, 3], 0, 3),
    ([2, 7, 11, 15, -2, 9, 7], 9, 3),
    ([10**9, -(10**9), 10**9], 0, 2),
    ([4, 4, 4, 1, 7, 3, 5], 8, 5),
]


def main() -> int:
    for k, (nums, target, expected) in enumerate(PUBLIC_CASES):
        got = count_pairs(list(nums), target)
        if got != expected:
            print(
                f"wrong answer on public input {k}: got {got!r}, expected {expected}",
                file=sys.stderr,
            )
            print("public_ok: 0")
            return 1
    print(f"public_cases: {len(PUBLIC_CASES)}")
    print("public_ok: 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
