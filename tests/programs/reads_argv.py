import sys

print("argv:", sys.argv, "name:", __name__, "file:", __file__.rsplit("/", 1)[-1])
