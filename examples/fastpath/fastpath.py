"""Editable: the function whose speed the fastpath track measures.

count_pairs(nums, target) returns the number of index pairs (i, j) with
i < j and nums[i] + nums[j] == target. nums is a list of ints (possibly
negative, possibly repeated); target is an int.
"""


def count_pairs(nums, target):
    count = 0
    n = len(nums)
    for i in range(n):
        for j in range(i + 1, n):
            if nums[i] + nums[j] == target:
                count += 1
    return count
