"""The ML-DSA-44 test vector of C2SP httpsig-pq v0.1.0 (c2sp.org/httpsig-pq, section
"Test vectors", ML-DSA-44), copied from the specification: the seed generates the key
pair deterministically; ML-DSA signing is randomized, so the signature is one valid
sample over the signature base, checked by verifying, never by reproducing it.
"""

from __future__ import annotations

SEED_HEX = "c80d699b2daa47d54b8697f5a917c696400d7063b30a234d18ad672250ae42d9"

SIGNATURE_BASE = (
    '"@method": GET\n'
    '"@target-uri": https://example.com/foo?param=Value&Pet=dog\n'
    '"host": example.com\n'
    '"date": Mon, 06 Jul 2026 20:00:00 GMT\n'
    '"@signature-params": ("@method" "@target-uri" "host" "date");created=1783368000;'
    'keyid="test-key-mldsa44";alg="ml-dsa-44"'
)
SIGNATURE_PARAMS = (
    '("@method" "@target-uri" "host" "date");created=1783368000;'
    'keyid="test-key-mldsa44";alg="ml-dsa-44"'
)
URL = "https://example.com/foo?param=Value&Pet=dog"
HEADERS = {"Host": "example.com", "Date": "Mon, 06 Jul 2026 20:00:00 GMT"}
KEY_ID = "test-key-mldsa44"

PUBLIC_KEY_B64 = (
    "guWbbXQe/Y1a83/qIeU8MjIrRseICPuOyWzoGXk27Fia2lpk2uPxbEfh/iEmvY1z/LTtxSBFZS8zbgV04qa0"
    "38ZokwE+QoBcISX0H4F9hEY3Oxg8SRtzrek0E+mBOc6R4ilBje5vodImgSMTMSXKuDz2PWqvrLY20AfLmMkL"
    "XZqVERYcW+S7iKyTP53cvtenYwealt3MGcZxLKRAMnCGBY3pRfj1xn6czY6OuMYNuJaW1rAeL2BeVpNA+XBA"
    "+HUHS1yTYOGw93ddFe9lw0RDex7Pw+tht/n31gggrR4D0kmE8L88Q5c2qWuQtxk9+cmHTm3u1WuG/vCRiubT"
    "A3DmY0pK1fO1etarscNRnZ06q5UfTgSQOMqR/PLXtqT9cZiN8GWQvum15uVuxXCubB4r7T3nz2ijyBPQfo+Y"
    "wd10QxI8dpGpsBd9SEslLo+esyFDt7+9t4c702PNC0121oI18PriNlKxjxshQljNnrXSZ4eCvhHrY5Le8B/m"
    "Twsb/LYPbBvktCecvkRxboTjhyq2anblDt5Hp55gn+0YRWUz7myuDjBD/+a2riHzOXCoLOtGvsfVTLAwLPYj"
    "/AIBbdVFrGq9MKldtcgiqTWhG6JWD/dxFrfUT4YIf2yWO9AbhkgkgPynKmV82sLda4L3JaABwSXVAB1vzDmx"
    "fQ17orBFxX2pK23G5EmrG8Ix/1O9NJ35LSxkZhUmNs+4zm9GRaChPbw04q//Gc9CPiE3xvv/BrRms5mIiRl7"
    "zT8o2mgNs/APM45mJrKClmYRQllKVwnKBj+njZkDv1CG2WeBv01COmic4P4EEraSmKO8I5sJ98gpTiA9jeBu"
    "vloLYdAInPyZui01GyQO4P3OETyAVqggBGIvajxWuio7eL+4XZmkX3AMb5XrfWtlfYCKUzhodcv7NM6M4Liz"
    "Eh0KZ8qSHsnVZxqwb5J9hb4oiR5/N7sgxjjtiBsbg/vJ1UmBZZR6hPjnLbLDTZ6PUMjeQNdoYGL0Cv4ESloa"
    "Etc4vhW/Aa2roIyoAM/kimrHYztNknxZK3nLQ9PXVp9Np1okp4VPUkOfHvy6Bk2WPQd8vdwrfE3xOPGrkhzd"
    "mlcsVEp3rIAW4s4Hem2A99CFSkbPePEEPG4uB3sVl73X+sr8+X7jFkiiy686eV73zQTrqL4OnrYJIkaZr6zL"
    "XHccvm1txmftmtS3WH3Ny0hGVjwxnu1femv2++2pZpZr67//WBksxPOG4xk6AA7xrHEAjRFA0b0g6AC3+WuZ"
    "maNCNMd8YdibEt/WHKg7uGWYetMf45cWxPxZmNl+jddlf1btTAfYZ+eXla3Tx/pg5fU2EWTXyTOVIRdRwAOp"
    "ZHG7jFYCxRE2SWFFM2lwjLxzso69uABhM1zraUxo6TfOalw1x7S1NkTowesaJPlTMmr43N5hdbRyDD6qmcCS"
    "NNjDICvK/fv3ijSY0lueglt1Jf7O1fi9/s0CNGf8E/pQohdb/pzGhSlJRo73hC/wTmLEjFukAYNdNeJO8Fxg"
    "e7j6rLHIOu22q8lK0DSsWqXXeFYt5mKmdTOFHN6soJQ7Uk43HgwoMreCn6xJQhl87CZu4SUzr5XztrsOV/YF"
    "5u5IYY8cDneoZW+0ldE+/8bvI8gi352YmfL9ZY5TacDexbl0S+hGbR7IPHh6av0N+odj2uBNt4Cjb3Mt3aYw"
    "Qi2Yh9vD+CaGcz5AO67GAf7pIpS8naBrzQeNjdOYLxu6VcXT4zLO9Gu1Uv+RvkLPaalcAQ=="
)

SIGNATURE_B64 = (
    "xMPE4JdLqAZ69uTOeLp4kAqExJpuY1JBqXtOslHrYcuAZ4VWxCNvDbqZPE6WuJRRIHc0f7AVjYEKmKe1YfNg"
    "WnilnzXaKfLo3O1jJsOMMYwtfnpHOHKY6JwvJbG+prQrLy1B4+GQa87nF43XbyAZx5/Hm86AfSep/yXYfctz"
    "AAFF2CPKwONhTv3JxKNu1ke3J5FKqWUiDBQyCT0/MRdEEE+EfUNuM3z2yPm8/XHRrPXGhdKfprb0c6OzcUTP"
    "iAq10x6gsFviSfgdfOA7yYVgjnou/wOCDCoZmSIrShxQbYtfVk3jnyuK0LQR+vSMrAzv9cCuQAcFFXK0ckf2"
    "p1nASr4BvJHWM98H6qTrm1vytPDbhnoaMLBQyxxGJhEMIW04yR8Td9LwXFY9Jt6p6HQqITSy2s9lOXmDk9UW"
    "QXJ+TK220apBOHqHvAst6fyOf2HJFyn4NkthzcbCFFSaGx7PtJvNid7NQYi811e3jEbiqwva+cKAy7CaIyq5"
    "ufwys5072YG0mUz7Cc7h2jCRWQLHvEQwbi/ZLUY92lEaqBO0eSRQfJ3CkpvxMY4nY/U+Dtw5IHzPbK4olqak"
    "tMuiUYbC2QDvFm/LZ5UUFSYTdGNJtmDPMZZNtzYatgn1m1aTmtHTpT1d64DIFG7WCqAQwIzgfZRUMAFlHcQK"
    "q4jOkEzX4nBtezw5vrqilu3MC5XNsjC+cEVtZsnDj6MShmFkQEkn4lgpEy5bVxX8Ku8aucMwKWxCQ0gQFGsK"
    "GdoNC9iFPw3EsdWqpgvkhXtav2dFxqQJTE4boN0g7DVW1GrrTeIdkfX9o4lPLfW5XWi7Q0Sywt37U7DG/hHG"
    "dlz3vC/uLNv8O6keycUFfnIU7culqs0OBCj4RiijDk+5icrKzAmr/ufOb0O5fdw0rfaztaANHyBpgPzENAl4"
    "qRa3SecWErZbS7fAyjbc1fYwPxisp0Htc4MTNomaCoy9JihoFpHkV4q6zaLMQPg9yQYvEjfEBcGL3IcfdXgf"
    "G2jgz0/+ggq68iz/99RMFA2znvm87T/fNMAXtvXBIHROX2/RfZ/U+X4MgB+kZdptWWzWoTcPT2M/JZB25/rR"
    "2zmsSI/wFVbKiTFA3sobQUJlUo/96DGKlPsPqR0hz423lEYn5v40tu1qfINcGPms7lHXn7JhtCahFndZv7Ws"
    "ONV2p4Oi8fD+07sA3g4cfq15Ukt1JYIWze71GxI4XCx4f6ExFhSLVqx32hadk9q0vAMWZHw5k5oHnqVBKx98"
    "8fmrNTNGuYqAQsKmsKDNRqduBQ+EKsg8wj4cRjFEYAQiw67OFgE4r20dsF9GuFJeN01CNLL+SDtnB0O/6cVd"
    "xfi3rlfrkfuyFD5oqE9JgFp8tOnJCQT7c/YoFvm+1pMsB9Vn5SirdApdO1gA5qwrCaUq6xAsz+xqNZeOD5q5"
    "tp89BnsyQ/m5Got8aLHXNI5RKg0i2H9sK5yj3nm70ZZjHo4V4Fmbd6ANphOPb4BBtYQm/xraGA4+2G+GqIG9"
    "aqTa+xqWEUnn5xWgO8DUybJbAqGAlcrVpyQVTJe7TOERAfhA45rZxxvwfcxu1kMX4QQHTtqiz5MHL4I8AcpZ"
    "hMtlzDCKXwpG8vaMSIv+RdkDZDOyS3/zumvdMoy/4+kHUqwnCy9NMatHTdWu/pD3KDiFndHw9oxoD6uzDWm6"
    "hwJNnxbM/u/7lRZMJkPaMR9xyd4t2ctWGmEtcJBfT7cclxMRdzdIO8Qz/ggshWg3bbJrWslL6wFSOkmZkscS"
    "WTJtUMkWSl2a0df92UvdvJpV6SHhy9NWlHq6hn04vKo55/BbjhFNRyOZIJx/3WnUQIVbhApDBHrf3Dpzfcvn"
    "lkyQZvxtCqdPzN5nHDVZ50+01nye/b+WsUH56ga+ALzNmPS2iHZAirlBQA3td4r+MvFyW6wAdYWEQYsF4LMt"
    "NyhURYB+oEPEesLu7Op61sZtyDUT2aXknqtgsjBJU+D1lfey27x82BjbZ/1/6S0GKDc4+8fXF8+AnntdaQbW"
    "bAcdQXTs//EmRFvCJMa0+rKiULt8zQz6g53Bum8M12YfUKRDTCHD0o8HjzTL4Hyhhq8yIzV4b9J5Q7tXqTsU"
    "saSq6Jti0drlwSGM9ZADaEbC+EpkSBh9rVMqSwZBmmnumUc6UjDtiKXLs8l2h47HX+hNWxt1uZSAO9SWzsJ3"
    "Bw9cTa2Hwi8mEEXAWk56GUJQ51tWNbxsApLvCOC/jui+KfqfG9FXrveOAhM0fUCYJaztXEOyIPAlY7MPD9oI"
    "hY1wPfRf6cVNVfdMWxtIjiuLyl35E2EpKU5aL/qp0HiZ6CkciFJvt3Q+E6+r6FMzM2QDG9iMpwA3YvFA2ZBs"
    "4Hgcv2lNvE31/LT78zrtBaqesAFvDwJ5rx9vWfI9jP01chm9its8Rp77lnQM95eJp6Y4+RzJKF5gjYqyke9C"
    "AErkmyaBZE/cd8vkNZFUvu5dbtoqUZPFIHG7TBodCimgKpWxJZOuKUKujviSsDdp5V/aDvJiUFfEas5Pzl4E"
    "8FHQnM+ucjEhKyqHdye9faMVYat9f5UfHLK52mKmWog8wa7JjMtDfVG6GF/ZWx8s8qDSZltNqMsb1H6nVxRa"
    "GrZjt+OzTSyCkQV4oG90I93zMkYUQWLm9Zp5QIt/6Lp+vN3bh+QHWqiyIozEJsd/vcYJBcm49nxJhAPs1EgX"
    "r4esryJKFVp4fDo3kg7lDYPY1nL9EJP9XYZex6V5oqKh6ozwDuwfVj0A+2nmqsW2LBUUvwEX95aVXI+X2QMS"
    "QJMIajMwUHtVwBqTHU2VEgYVzmIsc00HoaBAGMCPb0nA0468h+FO7MPlZvADg08xmNMxoPQEVCu67p62iePU"
    "lrhuHxBPlko2Q1r/+coZVG8Yc6BB3DovIweezsdeJmut9RrDIMbigewyoQ67+SC2zN0rLe9vpgqM9+REuk6k"
    "kdJW2YCMI1PbrexSAlIaTjz+RA4+lYIrFXYqFXD6ie/hLIF71J+XTaGZtVQy0jdFOZ5kX16oatMr1QYh1ESe"
    "5sLjiPlC3o8+RYZze6qBfvMi9B+FICpMO+UqUOlrnhBVKuxYTZc/IsFXrr2TlvKKRy4fAzZGM0jOsXkAjMkC"
    "VYzMs8QQFCU4PlNfYGNrpLO4xcjM1tjp6+0rMjU9XnF4gIuXprTH1+Pq+xc4PkpMcXJ1d4GKjqnE1dfh5PT7"
    "KC9HaGx+naOorK75AAAAAAAAAAAAABUmOkY="
)
