"""A tiny aiogram 3 bot pointed at the fake with TelegramAPIServer.from_base (env FAKE_API_ROOT)."""
import asyncio
import logging
import os

from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

logging.basicConfig(level=logging.INFO)
dp = Dispatcher()


@dp.message(CommandStart())
async def start(message: Message) -> None:
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Ping", callback_data="ping")]])
    await message.answer(f"Hello {message.from_user.first_name}", reply_markup=keyboard)


@dp.callback_query(F.data == "ping")
async def ping(query: CallbackQuery) -> None:
    await query.answer("pong!")
    await query.message.edit_text("Pong")


@dp.message(F.text)
async def echo(message: Message) -> None:
    await message.answer("echo: " + message.text)


async def main() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(os.environ["FAKE_API_ROOT"]))
    bot = Bot(os.environ["TELEGRAM_BOT_TOKEN"], session=session)
    await dp.start_polling(bot, handle_signals=True)


if __name__ == "__main__":
    asyncio.run(main())
