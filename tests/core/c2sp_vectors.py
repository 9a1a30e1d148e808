"""Published C2SP vectors for the cosignature, witness and tlog-proof tests (data only).

Sources, each cited where used:

- c2sp.org/tlog-cosignature (github.com/C2SP/C2SP, tlog-cosignature.md at commit
  01194db11950a0ae2b2b2401afa0a4063a822458): the example cosigned checkpoint and the example
  signed message of section "Ed25519 signed message".
- c2sp.org/tlog-witness (tlog-witness.md at commit 8d7756274916fb9efd94da8bc7264019e3fe46e4),
  section "add-checkpoint": the example request and response bodies.
- c2sp.org/tlog-proof (tlog-proof.md at commit 0065ea5b716154a2dd48508e3f905012a16ce5e9),
  the example proof (its signatures are elided with "[...]" in the spec).
- github.com/transparency-dev/formats, note/note_cosigv1_test.go
  (commit 091ce41666c09683aa9350785e572be27f0c026d): TestMLDSAVerifyTorchwood, an ML-DSA-44
  subtree cosignature made by filippo.io/torchwood, and TestCosignatureTimestamp /
  TestCoSigV1NewVerifier for a real type 0x04 vkey and signature.
"""

from __future__ import annotations

# tlog-cosignature, introduction: a checkpoint with a log signature and a cosignature.
COSIG_SPEC_NOTE = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv"
    "2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
).encode()

# tlog-cosignature, "Ed25519 signed message": the message for time 1679315147.
COSIG_SPEC_MESSAGE = (
    b"cosignature/v1\n"
    b"time 1679315147\n"
    b"example.com/behind-the-sofa\n"
    b"20852163\n"
    b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
COSIG_SPEC_TIME = 1679315147

# transparency-dev/formats: a type 0x04 vkey, and a cosignature whose timestamp is 1727964367.
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
FORMATS_COSIG_B64 = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBY"
    "JXORmnFBOBA=="
)
FORMATS_COSIG_TIME = 1727964367

# transparency-dev/formats TestMLDSAVerifyTorchwood: witness.example/w1 cosigns the subtree
# [8, 13) of example.com/log, timestamp 0 (start > 0).
TORCHWOOD_VKEY = (
    "witness.example/w1+7118e8f9+BhQzSuGTb/4Lcu4MREKut7NjCc8jQ0fjuNpEmJwKF9HV5lt3yF7H5jy+LcLO"
    "xjh/n4Gud7NOdRP3KpCH055x6Ntr4n6pZlJ+kmvZTJMgs5ygaJVf6q9zdhykYIPQz4fp6qm0fDXlVBqLVti/3zS0"
    "OiY5Kqbi0m55WZ9pnUnsiZT6cckK9FoWfXb1UHTsTgz+Uk+kQr4JHdJ/c5t9V6C0WE8JZMiVT0ljBbfP6VACzuEJ"
    "mc+zbF8Cbd8Mc31PkTR3YWFok3m4YagXfDlzegsE9jg0qWyTWDDkg+rcrcyCMpPam8LsWxQZXZ2O3w9aDbwKB70U"
    "RNreL/B6jNl95TXJjtEwmspLPxZwwPI8dE7lJbe9N2X0jQQbpcRvm46iLbZO+LdjblTMHfKgbCqgWej/n3Qexrov"
    "betYvrNR2qa7BMJk06PDDy9G8EvtNO6xhVp0DG8z4VkIx+Og9eqk3USAg4bKmN1ifuEeMcnlxvvPwnXjMp6kmmhD"
    "Esu1Qu4SgEFOG2PcUKdoaXlIDNADmJQHqeiA+JYhjvyTHDM609qpEkHsRYLbxGidKZtaZptOLEL7sLxIzVQMv07x"
    "Lw2q9qRFxx3yM8JbhJGg5rP28Xhl+3KcGNXy6Ydxuv3MXYCohjwSqAjOdoxs/FzV10HokFOY60vDQLtMUhby7Ob5"
    "VviG6+K5tu6hZogYfme3bzZDLO7VMyHMLKKTjfwJS9p1cagSsbqg5MJucfCfXJAw2vWb8n6eUA6qroBLgY9wjkBg"
    "06JAoBv85B7caOBjTitplbXk3pfQAzEE9yKEfSDjEfeVOSrBHK3zJQzw0q8RHSqYs+J7AnFgHxZ5IP5TUWkI/jgg"
    "3mdxpbaJ/YJ56uNCgFopQZihOCRVc/RFT53Zb1DXIRgqoP9VTIV3l03VPB2NrH49bEAzsCbNiL4NwLchYxoBZkG4"
    "Qp/GpTrjCDoDGtR36JipKbmMforXsz5Oh9Yul8s9p1apJXeSCuGsu5OgRBMXjvUoY9p/GFXHEPd6SPEAtDJfBwC5"
    "aWDgl4YC5cxKVzs/+xOvzyXmUg7pxtcJ4vIlWmBrmLb4PGVmPurJwx6BcOp7JRcyHCpycAfGMQ7xsBwafuiVCBQH"
    "GJhuDKETJa3MAa4H1uTB7GCiKuT8OohZ2LE/395+sftoy/yrX0H6HdCp+QEQ9ZOx0hbVLBOoAY6qVL1bgEBy/YrH"
    "gkCxh2lEWdw+9zb6yLWZI6ONX4mBcj3a5dDYfkvm5gAU4MXGAEWnSNeN9+MkylMQjUM5G2Cn7CTrA7IZ23EZ0bGr"
    "RMC7PERKbSj2pITgWqxJWH5l2IyK16cviUaXwGaZg8T8t2p77HtccGUodm6rWS0zBhzEyFajBzSi36b9aa3uDeFj"
    "soEonNUevKg/67jcq5Ua0NWqJ80c5q7glj4wWOMJiDHAFh56UzTPGh1zvndQI4ZxuGHRRgOrTiJ4w3llb9EbsEcT"
    "lvFOZzjXrZYfMKTdapHV+5Ykok0+avKNnaOPq9pvtvNDx524IGtQCH9i4RjfefsPsxnloXtqYvoV6O8dCiQHn4jB"
    "OECYdqA2ZjYVQ/oPNBt5n5TfNJgLBFokcAKVyrTkWrDXi1OHmw6vEtQJLSv3oqchEYIGXWaEi5/OCtruWfALpEl0"
    "rifAMgVhhJp2gL+GZU5c3EGOEwOoQQMKDRdYayEWovpu1KIeOMXaJcDle6hCZEseFxXFDg40MeCdXFyv+Ib55h5u"
    "JJDxXdiRzQxdKX+deoY="
)
TORCHWOOD_SIGNATURE_B64 = (
    "cRjo+QAAAAAAAAAA8gV4+ck4966yvL0QsyT+IEjKhqH98AWxUE3d3MHuDuK2L25nfF1KQfE31+q1YTFb0dCmtByh"
    "AlPikQdbbqoJXgV330W+j9DUSaRmN2XezVFtP8UWkpMgO5eTpqlvRYjmAHfnYnye8w1JY+lVHADlq1VXTdsDQ69R"
    "A+pPW9bEJYAJ4jxl89EUjXex2DwRA8fgdYYKLIin51BX4RVbAhszM2Vz47bvK+eSzwEQwxwvDBSDFKSZL6/Al0Z/"
    "0bLdAlBImuI7+uNfcJNr2Zk4fKMtUqppN9hWAnKDMdn3+alm62ILDOfq8IwHEpmCuVAcTKJ8aqymK0X8qewoJ84X"
    "XEPttqfZ0B2Ig9bhP2sc2la7MFhb1pyXoK9KoWWL9KQmBBleAKmEHt/f5HUrlAReuo5sh8jOunr+QddFL85BCy6t"
    "AqCDjexQRwgywKRKVU4Nhe00tAeW6nQICcFwg1cPtr0VkBfMDkk/E01Own93iiCtVTMcYTG6ocPse+lZ8cDQaKVz"
    "r/9UJiZt2PYS1ss0RoorLMYo3krLoc+yF3AyiKgIEnjUboed+G3HMDeAJqznRurFNT5sH9jNFWcmrOUIIvxFsKtt"
    "9wlsSscb7Mr8VMCJssL+KY+2JxDRHfELP8dFgphsj0sGGCI/gKiD7XaszouH2T6jSoF+BnMuGzwmbZCj94aZtOsx"
    "0h5Y6E9A0IdBdnHc3eBtJqGxXDHPBwJEHxFKlrytSKIPQTvD86VVxHeQJ1Gar5EjvG0LOJCRk2Yu+t/QT8WkGzEn"
    "e/LlvhnJ6qEiwmXL+AIeFcFXv8xTLP/fRwAsRsYzeje6jkk0BuDWPpKi9yDzh74Ha6ZbDhvFumv8gfMQP/s/LJRe"
    "bD8T3v7KCht7O5V8TBYSTwun45UJZBSW0J8a93LBbvOYdqmh6Ogin3zrXUty18UnPN5wV/ZfV05ayzOUpmduOj8y"
    "x/AK/bNHjVRZKm8P0kJi5Ddb5yEuBkwMiAGvRejc0x02WxfFbxCZiEdlixUnKX8NcKVLCbXIcSx/Re9UyvV0yY6n"
    "s0XuXW0yWiEo6BIygYxtqnR7J0+rIycBodnj37iBY59rHgP+mBwR9kgjrlhqoqLLwJ8DdgtieIO26b5QESAf/zqb"
    "V8ZFhDv4S5xNH+lgtwgkcW3C5StByVzfEWUNGIbCsX+P8FlIkEMScXQqo6z8U/XBw9GNIHaWeZyR/JuxZukCV5zL"
    "bLFRZ2elNA8XkA2AJhEUmapmEwflt8OxqBwtxsCkuuxkcq7anRE4FbClxI5sqVe3n7YCkjuZlkIs3I6UqEfEO3zS"
    "Cu1mOX38Zmo2oFXTx1EFqxF5zuXmO3hQG5HZqlLLJhcrVKRQ2jDvXBHzKr3r6w5FuNHJZo0SenvocDwr8SjDw74h"
    "oNker9hCTtEJlEVAtmtqiXcrN11KTRhd4JmWefj4KJiLh6uNKqvVTfVaYcCVpIbaWxaQshJqZ89yQymXLPk5gdJi"
    "FisOACry41fr+GMSPxhumO6jf+9frNpR33xAD2qebJcPK2xQJ0VgEbNJxEok13lEr0/xD+t71wcCkLnwCTWYv+J3"
    "viR/vAGmTQslFuZPMPisJzXv5j66ORBcJH0Ir/QK67F2AaDwKYA7Ty2Fxz72gD8FVfFkZcM+mQBYq9lv/nrgQNkV"
    "YnaFCpcI6zYVKS4NU7vyII1v+LAjKC9dhHTAp5bsqVoC2xtemlEp5eX62VX/akzN21HDp+lQTddNZoOd4RArWvqG"
    "VxwnMJkDA2pQnpjRCM5X+fYfy2KfBm16fTaeOYV47OkC8aXaI5+ye/rOtlLuERMbI09WgVga6EB85lhQQfWCDsEu"
    "tM8yuIZwUcGFpWDIXjwTpOUyAlZMUFfM6BeqDrcqR833b+s6y3UktkMZqPTJxeTK040+iuAWp0ltDXdDfIjhsJBk"
    "kSiz5aPOvJI1ItdvLR9zcCNLMy0JtsiE23MJ8CFahYnF7Zqr3nKxzYka+0XJUjl6afW6d09pdAuQYgXsz9H/Y4lY"
    "I5O/zY6zhNN5lTF5ajMUdGpC8DQIBmhBz3M4B1fj1ZZRTGypG3Mp5y0QRlKFDIQfvifNSGS+9oqewfSkEXhACc8E"
    "9/TcVM246Y+DAVSsEgDRfvxB7ukL6tWAF49DRCKX9wgLAUVAuj2XQfn1MJpHcStjbhSLIWr/yvqZ8vEtNC89Ilit"
    "FPH04+QHPiperKhOncxWD3CgaoFbtNDaJqUa9g8Dl8Sq3LoVDFeNrFaoTvEBAjANn3avoSTdzhBx+5h0GfGp+tfJ"
    "f3XjA4MVINiXZ4my/v2EFg3RNWwmyFv74aVNEWVzHHmD1rYjPfAvFVlCL5PjSOK85rpF1ZjU4T87MbChEYOhiVBI"
    "7tT6ybfhLIYi3dNUiGCVjD1AGcxpDYBrUwZ5w5pqK6m3S19k0i4aXu+elVS2u47TU8zfOdSrM1JqQvQ9MHBsA3tK"
    "2PswHTSyqL2qLYfy+WLezs8HETlGbDGSD8J2L3vlfwgQoUkgMRHhNmw67q666ZyE2rd/Sbwouhadv97C9dU1opu4"
    "sh7/NE0x7LJPo5HmsYEwjhxDphNHjpoq0r3qnQhwPutpLYb3WCWxgC6HdekjE5eLAaff/8Ri/UaNZzdlVROBsJ7w"
    "T40liyez5/mXrqfIguuBtPRUNSAnraJ0NUKmRmR0HbwlUg6pWXVYRSbGgNNVdM7H+Oy8numjVticQtFa8EJzIqcU"
    "+6zidJrozIB4bC+I/KcrvIUuOn8lPAMesfUCVV70wa9oIvevkQ6r5Vup6HsIqjIzrSJoBTOHdj6TTG8vurH5ok9g"
    "m5ziaQ0m1QcrwKOE5CjdXqQIvnY8zckZ2hdX8/aL3/1ieb/3QNN5o6/aQSOAaE2No7xH8U8b7zOH3QDl0/L6E9ol"
    "Nxz7X5uOSQ6RM69RqOUanMRAf6ZSSw1th9nHHIqDmFKjf8mfR2hMuYgbDdhxSVFL1/7rEjA6FY3RVLCZAGG7uwFj"
    "uK5DV6zIdxAZutRKOk66p5FyWR7LeCrPlew+TacBtByDNYuEuPilRz8cIN22uAcJ1FSjN+87+1N3tUGGiEX2EX0f"
    "o39w18eeEpKINiOB+07dNE9TwUkXwSR1TP8P1goLw7mUNhgWIeICBxgnLzE9c3Z+gIWGpsXR1toFDyMmJz9KgoaX"
    "tbnT2u4SExUXICMkOWFxcnuGl6Sns8L3AwYPFB0kKTxESGRqe3+LkpOsw9/i6/j6/wAAABIhNE0="
)
TORCHWOOD_ROOT_B64 = "E7ERCtFloiK1fdb+B6/dLG0pM1nmIR0ETKBSauCjtVw="
TORCHWOOD_ORIGIN = "example.com/log"
TORCHWOOD_START, TORCHWOOD_END = 8, 13

# tlog-witness, "add-checkpoint": the example request body and response body.
WITNESS_SPEC_REQUEST = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv"
    "2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6"
    "267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
).encode()
WITNESS_SPEC_RESPONSE = (
    "— witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLr"
    "dk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n"
    "— witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+D"
    "lkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n"
    "— witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC"
    "3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n"
).encode()

# tlog-proof: the example proof up to the checkpoint (the spec elides its signatures).
PROOF_SPEC_HEAD = (
    b"c2sp.org/tlog-proof@v1\n"
    b"extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n"
    b"index 73894\n"
    b"gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
    b"B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
    b"EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n"
    b"RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n"
    b"AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n"
    b"\n"
)
PROOF_SPEC_CHECKPOINT_TEXT = (
    b"example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n"
)
PROOF_SPEC_ELIDED_SIGNATURES = (
    "— example.com/fancylog hI2DJw[...]1roloI=\n"
    "— witness1.example mJirIklj[...]qY9v2B/5bg==\n"
    "— witness2.example TnKKVHLX[...]xwYwrSjgow==\n"
    "— witness3.example S4X82uH5[...]3oEcROGLFQ==\n"
).encode()
