"""The Postfix dialect, pure: keys, levels, the value mapping, answers, socketmap replies.

Nothing here opens a socket, reads a file or a clock: the server (:mod:`tlspolicy.servers`)
reads Postfix and the network and hands what it learnt to these functions.  The daemon's
path is ``keys.parse_postfix_key`` -> discovery -> one resolver decision per MX host ->
:func:`tlspolicy.postfix.answers.render` -> :class:`~tlspolicy.postfix.replies.SocketmapReply`.
"""
