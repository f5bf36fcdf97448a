"""The Bot API methods of the fake, as a mixin of FakeBotAPI (fake_api.py holds the server).

Every method bot-auto-order calls (getMe, deleteWebhook, getUpdates, sendMessage, sendSticker,
sendPhoto, editMessageText, editMessageCaption, deleteMessage, answerCallbackQuery, setWebhook) and a
few common ones. Each answers as Telegram does, errors included, because clients choose their
exception from the status and description (see ../shared/facts/telegram-bot-api.md).
"""
from __future__ import annotations

import secrets
import time
from typing import Any

from deploycheck.telegram.fake_model import MAX_CAPTION, MAX_TEXT, ApiError, Output, plain_text

MEDIA = ("photo", "document", "video", "animation", "audio")   # the kinds of message that carry a caption
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message")


def flag(value: Any) -> bool:
    """A boolean parameter: JSON true, or the text "true"/"True" a form carries."""
    return value is True or str(value).lower() == "true"


def _source(value: Any) -> str:
    """How a file was given, for the log: an upload (name, size) or a file id / URL."""
    if isinstance(value, dict):
        return f"upload {value.get('filename') or 'file'} ({value.get('size', 0)} bytes)"
    text = str(value)
    return text if len(text) <= 80 else text[:80] + "…"


def _inline(markup: Any) -> bool:
    return isinstance(markup, dict) and "inline_keyboard" in markup


class BotMethods:
    """Needs from its host: bot, directory, log, updates, commands, webhook, _messages,
    _next_message_id, _callbacks, _outboxes, _is_down()."""

    SUPPORTED = ("getMe", "deleteWebhook", "setWebhook", "getWebhookInfo", "setMyCommands", "getMyCommands",
                 "getUpdates", "sendMessage", "sendPhoto", "sendDocument", "sendSticker", "sendChatAction",
                 "editMessageText", "editMessageCaption", "editMessageReplyMarkup", "deleteMessage",
                 "answerCallbackQuery")

    # -- messages and what played users see --------------------------------------------------------
    def _new_message(self, chat_id: int, sender: dict, **content: Any) -> dict:
        message_id = self._next_message_id.get(chat_id, 0) + 1
        self._next_message_id[chat_id] = message_id
        message = {"message_id": message_id, "date": int(time.time()), "chat": self.directory.chat(chat_id),
                   "from": sender, **content}
        self._messages[(chat_id, message_id)] = message
        return message

    def _emit(self, chat_id: int, kind: str, message: dict, markup: Any = None) -> None:
        """To a played user's driver. The reply_markup is kept as sent, reply keyboards included (the
        Message object only echoes inline keyboards, but the user's client shows both). Shop users
        nobody plays get only the log: no queue per chat for 50,000 of them."""
        if chat_id in self.directory.users or chat_id in self._outboxes:
            self.outbox(chat_id).put_nowait(Output(kind, {**message, "sent_reply_markup": markup}))

    async def _send(self, method: str, p: dict, content: dict, **logged: Any) -> dict:
        chat_id = p.get("chat_id")
        try:
            chat_id = self.directory.chat_for_send(chat_id)
        except ApiError as err:      # the refusal is part of what this user (did not) receive
            if isinstance(chat_id, int):
                self.log.record(chat_id, method, error=err, text=content.get("text"),
                                caption=content.get("caption"), **logged)
            raise
        markup = p.get("reply_markup")
        if _inline(markup):
            content["reply_markup"] = markup
        message = self._new_message(chat_id, self.bot, **content)
        self.log.record(chat_id, method, message=message, markup=markup, **logged)
        self._emit(chat_id, "message", message, markup)
        return message

    @staticmethod
    def _text(p: dict) -> str:
        text = plain_text(str(p.get("text") or ""), p.get("parse_mode"))
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return text

    @staticmethod
    def _caption(p: dict) -> str:
        caption = plain_text(str(p.get("caption") or ""), p.get("parse_mode"))
        if len(caption) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        return caption

    async def _media(self, method: str, p: dict, field_name: str, content: Any) -> dict:
        given = p.get(field_name)
        if not given:
            raise ApiError(400, f"Bad Request: there is no {field_name} in the request")
        extra = {"caption": self._caption(p)} if p.get("caption") else {}
        return await self._send(method, p, {field_name: content, **extra}, **{field_name: _source(given)})

    def _file(self, kind: str, given: Any, **more: Any) -> dict:
        """A file object; a file id sent again keeps its id, an upload gets a new one."""
        file_id = given if isinstance(given, str) and not given.startswith(("http://", "https://")) \
            else f"fake-{kind}-{secrets.token_hex(6)}"
        return {"file_id": file_id, "file_unique_id": f"u-{file_id[-16:]}", **more}

    # -- the bot and its webhook ----------------------------------------------------------------------
    async def _m_getme(self, p: dict) -> dict:
        return self.bot

    async def _m_deletewebhook(self, p: dict) -> bool:
        self.webhook = ""
        if flag(p.get("drop_pending_updates")):
            self.updates.drop_pending()
        return True

    async def _m_setwebhook(self, p: dict) -> bool:
        url = str(p.get("url") or "")
        if url and not url.startswith("https://"):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        # Recorded only: the fake does not POST updates to a webhook (it is a public URL, not ours).
        self.webhook = url
        if flag(p.get("drop_pending_updates")):
            self.updates.drop_pending()
        return True

    async def _m_getwebhookinfo(self, p: dict) -> dict:
        return {"url": self.webhook, "has_custom_certificate": False, "pending_update_count": len(self.updates)}

    async def _m_setmycommands(self, p: dict) -> bool:
        self.commands = p.get("commands") or []
        return True

    async def _m_getmycommands(self, p: dict) -> list:
        return self.commands

    async def _m_getupdates(self, p: dict) -> list:
        if self.webhook:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use "
                                "deleteWebhook to delete the webhook first")
        return await self.updates.poll(int(p.get("offset") or 0), int(p.get("limit") or 100),
                                       float(p.get("timeout") or 0), self._is_down)

    # -- sending ----------------------------------------------------------------------------------------
    async def _m_sendmessage(self, p: dict) -> dict:
        return await self._send("sendMessage", p, {"text": self._text(p)})

    async def _m_sendphoto(self, p: dict) -> dict:
        # Telegram answers with the sizes it made; one is enough for clients.
        photo = [self._file("photo", p.get("photo"), width=320, height=320, file_size=1)]
        return await self._media("sendPhoto", p, "photo", photo)

    async def _m_senddocument(self, p: dict) -> dict:
        given = p.get("document")
        name = {"file_name": given["filename"]} if isinstance(given, dict) and given.get("filename") else {}
        return await self._media("sendDocument", p, "document", self._file("document", given, **name))

    async def _m_sendsticker(self, p: dict) -> dict:
        sticker = self._file("sticker", p.get("sticker"), type="regular", width=512, height=512,
                             is_animated=False, is_video=False)
        return await self._media("sendSticker", p, "sticker", sticker)

    async def _m_sendchataction(self, p: dict) -> bool:
        self.directory.chat_for_send(p.get("chat_id"))
        return True

    # -- changing what was sent ---------------------------------------------------------------------------
    def _bot_message(self, p: dict) -> tuple[int, dict]:
        if p.get("inline_message_id"):
            raise ApiError(400, "Bad Request: inline messages are not supported by the fake Bot API")
        chat_id = self.directory.chat_for_send(p.get("chat_id"))
        message = self._messages.get((chat_id, p.get("message_id")))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message["from"]["id"] != self.bot["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        return chat_id, message

    def _edit(self, method: str, chat_id: int, message: dict, changes: dict, markup: Any) -> dict:
        """Telegram replaces the inline keyboard with the one given, and drops it when none is."""
        new = {k: v for k, v in message.items() if k != "reply_markup"}
        new.update(changes)
        new = {k: v for k, v in new.items() if v is not None}
        if _inline(markup):
            new["reply_markup"] = markup
        if new == message:
            raise ApiError(400, NOT_MODIFIED)
        new["edit_date"] = int(time.time())
        self._messages[(chat_id, message["message_id"])] = new
        self.log.record(chat_id, method, message=new, markup=markup)
        self._emit(chat_id, "edit", new, markup)
        return new

    async def _m_editmessagetext(self, p: dict) -> dict:
        chat_id, message = self._bot_message(p)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        return self._edit("editMessageText", chat_id, message, {"text": self._text(p)}, p.get("reply_markup"))

    async def _m_editmessagecaption(self, p: dict) -> dict:
        chat_id, message = self._bot_message(p)
        if not any(kind in message for kind in MEDIA):
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = self._caption(p) or None        # an empty caption removes it
        return self._edit("editMessageCaption", chat_id, message, {"caption": caption}, p.get("reply_markup"))

    async def _m_editmessagereplymarkup(self, p: dict) -> dict:
        chat_id, message = self._bot_message(p)
        return self._edit("editMessageReplyMarkup", chat_id, message, {}, p.get("reply_markup"))

    async def _m_deletemessage(self, p: dict) -> bool:
        chat_id = self.directory.chat_for_send(p.get("chat_id"))
        message_id = p.get("message_id")
        if self._messages.pop((chat_id, message_id), None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        self.log.record(chat_id, "deleteMessage", message_id=message_id)
        self._emit(chat_id, "delete", {"message_id": message_id})
        return True

    async def _m_answercallbackquery(self, p: dict) -> bool:
        """Answering is optional for a bot (many of bot-auto-order's callbacks are never answered);
        answering one twice, or an unknown one, is the error Telegram gives."""
        query = self._callbacks.pop(str(p.get("callback_query_id")), None)
        if query is None:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        if p.get("text"):
            chat_id = query["message"]["chat"]["id"]
            alert = {"text": str(p["text"]), "show_alert": flag(p.get("show_alert"))}
            self.log.record(chat_id, "answerCallbackQuery", **alert)
            self._emit(chat_id, "alert", alert)
        return True
