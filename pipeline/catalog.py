"""Static catalogs the sample-data generator draws from: phone apps, devices, time zones, products.

Plain constants only; nothing is read or computed at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

APP_CATEGORIES: tuple[str, ...] = (
    "Social",
    "Video",
    "Games",
    "Productivity",
    "Communication",
    "Music",
    "News",
    "Shopping",
    "Health",
    "Education",
    "Travel",
    "Finance",
    "Utilities",
)


@dataclass(frozen=True)
class App:
    app_id: str  # Android package name (reverse DNS)
    name: str
    category: str
    popularity: float  # relative share of sessions across the whole fleet
    typical_session_seconds: int  # median foreground time per session
    notifications_per_session: float  # mean notifications received around a session


APPS: tuple[App, ...] = (
    # Social
    App("com.instagram.android", "Instagram", "Social", 9.0, 95, 2.0),
    App("com.zhiliaoapp.musically", "TikTok", "Social", 8.0, 180, 1.2),
    App("com.facebook.katana", "Facebook", "Social", 5.0, 80, 1.5),
    App("com.twitter.android", "X", "Social", 3.5, 75, 1.4),
    App("com.snapchat.android", "Snapchat", "Social", 4.0, 45, 2.5),
    App("com.reddit.frontpage", "Reddit", "Social", 3.0, 140, 0.8),
    App("com.pinterest", "Pinterest", "Social", 1.8, 110, 0.6),
    App("com.linkedin.android", "LinkedIn", "Social", 1.5, 60, 0.9),
    # Communication
    App("com.whatsapp", "WhatsApp", "Communication", 12.0, 40, 4.0),
    App("org.telegram.messenger", "Telegram", "Communication", 3.0, 45, 3.0),
    App("com.google.android.gm", "Gmail", "Communication", 4.0, 35, 2.2),
    App("com.facebook.orca", "Messenger", "Communication", 3.0, 40, 2.8),
    App("org.thoughtcrime.securesms", "Signal", "Communication", 1.5, 35, 2.5),
    App("com.discord", "Discord", "Communication", 2.0, 90, 3.5),
    App("com.google.android.apps.messaging", "Messages", "Communication", 5.0, 25, 1.8),
    App("com.google.android.dialer", "Phone", "Communication", 3.0, 150, 0.7),
    # Video
    App("com.google.android.youtube", "YouTube", "Video", 8.0, 420, 0.8),
    App("com.netflix.mediaclient", "Netflix", "Video", 2.0, 1500, 0.2),
    App("com.disney.disneyplus", "Disney+", "Video", 1.0, 1300, 0.2),
    App("tv.twitch.android.app", "Twitch", "Video", 0.8, 900, 0.5),
    App("com.amazon.avod.thirdpartyclient", "Prime Video", "Video", 0.9, 1400, 0.2),
    # Music
    App("com.spotify.music", "Spotify", "Music", 4.0, 60, 0.3),
    App("com.google.android.apps.youtube.music", "YouTube Music", "Music", 1.5, 55, 0.3),
    App("com.soundcloud.android", "SoundCloud", "Music", 0.7, 70, 0.3),
    App("com.shazam.android", "Shazam", "Music", 0.5, 20, 0.1),
    # Games
    App("com.king.candycrushsaga", "Candy Crush Saga", "Games", 2.0, 420, 0.6),
    App("com.supercell.clashofclans", "Clash of Clans", "Games", 1.2, 360, 1.2),
    App("com.mojang.minecraftpe", "Minecraft", "Games", 0.8, 900, 0.2),
    App("com.roblox.client", "Roblox", "Games", 1.2, 780, 0.6),
    App("com.nianticlabs.pokemongo", "Pokémon GO", "Games", 0.6, 300, 0.8),
    App("com.chess", "Chess.com", "Games", 0.7, 420, 0.9),
    # Productivity
    App("com.google.android.apps.docs", "Google Drive", "Productivity", 1.2, 90, 0.3),
    App("com.microsoft.office.outlook", "Outlook", "Productivity", 2.0, 50, 2.0),
    App("notion.id", "Notion", "Productivity", 0.8, 150, 0.4),
    App("com.google.android.calendar", "Calendar", "Productivity", 1.5, 20, 0.9),
    App("com.todoist", "Todoist", "Productivity", 0.5, 30, 0.7),
    App("com.Slack", "Slack", "Productivity", 1.8, 70, 3.0),
    App("com.microsoft.teams", "Microsoft Teams", "Productivity", 1.3, 300, 2.0),
    # News
    App("com.google.android.apps.magazines", "Google News", "News", 1.5, 120, 0.8),
    App("com.nytimes.android", "NYTimes", "News", 0.7, 180, 0.6),
    App("bbc.mobile.news.ww", "BBC News", "News", 0.7, 150, 0.7),
    App("flipboard.app", "Flipboard", "News", 0.3, 130, 0.3),
    # Shopping
    App("com.amazon.mShop.android.shopping", "Amazon Shopping", "Shopping", 2.0, 150, 0.8),
    App("com.ebay.mobile", "eBay", "Shopping", 0.9, 130, 0.7),
    App("com.einnovation.temu", "Temu", "Shopping", 1.0, 200, 1.2),
    App("de.zalando.mobile", "Zalando", "Shopping", 0.5, 140, 0.5),
    # Health
    App("com.strava", "Strava", "Health", 0.7, 80, 0.6),
    App("com.myfitnesspal.android", "MyFitnessPal", "Health", 0.5, 60, 0.5),
    App("com.getsomeheadspace.android", "Headspace", "Health", 0.3, 600, 0.3),
    App("com.google.android.apps.fitness", "Fit", "Health", 0.6, 25, 0.4),
    # Education
    App("com.duolingo", "Duolingo", "Education", 1.2, 240, 1.0),
    App("org.khanacademy.android", "Khan Academy", "Education", 0.3, 480, 0.2),
    App("com.quizlet.quizletandroid", "Quizlet", "Education", 0.4, 300, 0.3),
    # Travel
    App("com.google.android.apps.maps", "Maps", "Travel", 2.5, 150, 0.4),
    App("com.ubercab", "Uber", "Travel", 0.8, 60, 1.0),
    App("com.airbnb.android", "Airbnb", "Travel", 0.3, 150, 0.4),
    App("com.booking", "Booking.com", "Travel", 0.3, 160, 0.5),
    App("de.hafas.android.db", "DB Navigator", "Travel", 0.4, 45, 0.6),
    # Finance
    App("com.paypal.android.p2pmobile", "PayPal", "Finance", 0.8, 45, 0.6),
    App("com.revolut.revolut", "Revolut", "Finance", 0.8, 40, 1.0),
    App("com.coinbase.android", "Coinbase", "Finance", 0.4, 70, 0.8),
    App("de.number26.android", "N26", "Finance", 0.3, 35, 0.9),
    # Utilities
    App("com.android.chrome", "Chrome", "Utilities", 7.0, 110, 0.5),
    App("com.google.android.GoogleCamera", "Camera", "Utilities", 2.0, 25, 0.0),
    App("com.google.android.apps.photos", "Photos", "Utilities", 2.5, 50, 0.3),
    App("com.android.settings", "Settings", "Utilities", 1.5, 20, 0.0),
    App("com.google.android.calculator", "Calculator", "Utilities", 0.5, 15, 0.0),
    App("com.android.vending", "Play Store", "Utilities", 1.0, 45, 0.8),
    App("com.google.android.apps.authenticator2", "Authenticator", "Utilities", 0.6, 10, 0.0),
)

# Apps every phone has, whatever the owner installs.
PREINSTALLED_APP_IDS: frozenset[str] = frozenset(
    {
        "com.android.chrome",
        "com.google.android.GoogleCamera",
        "com.google.android.apps.photos",
        "com.android.settings",
        "com.google.android.calculator",
        "com.android.vending",
        "com.google.android.apps.messaging",
        "com.google.android.dialer",
        "com.google.android.gm",
        "com.google.android.apps.maps",
        "com.google.android.youtube",
        "com.google.android.calendar",
    }
)


@dataclass(frozen=True)
class DeviceModel:
    model: str
    os_versions: tuple[str, ...]  # versions seen in the fleet, oldest first
    popularity: float


DEVICE_MODELS: tuple[DeviceModel, ...] = (
    DeviceModel("Pixel 8", ("Android 14", "Android 15"), 3.0),
    DeviceModel("Pixel 9 Pro", ("Android 15",), 1.5),
    DeviceModel("Pixel 7a", ("Android 14", "Android 15"), 2.0),
    DeviceModel("Galaxy S24", ("Android 14", "Android 15"), 4.0),
    DeviceModel("Galaxy S23 FE", ("Android 14",), 2.0),
    DeviceModel("Galaxy A54", ("Android 13", "Android 14"), 3.5),
    DeviceModel("OnePlus 12", ("Android 14", "Android 15"), 1.2),
    DeviceModel("Xiaomi 14", ("Android 14",), 1.5),
    DeviceModel("Moto G84", ("Android 13", "Android 14"), 1.3),
    DeviceModel("Nothing Phone (2)", ("Android 14", "Android 15"), 0.7),
    DeviceModel("Fairphone 5", ("Android 13", "Android 14"), 0.4),
)

# Monitoring agent releases, oldest first; the newest rolls out during the generated window.
AGENT_VERSIONS: tuple[str, ...] = ("5.1.4", "5.2.0", "5.2.1")

# (IANA zone, share of customers)
TIMEZONES: tuple[tuple[str, float], ...] = (
    ("Europe/Berlin", 0.22),
    ("Europe/London", 0.14),
    ("America/New_York", 0.18),
    ("America/Chicago", 0.08),
    ("America/Los_Angeles", 0.12),
    ("America/Sao_Paulo", 0.08),
    ("Asia/Kolkata", 0.07),
    ("Asia/Tokyo", 0.06),
    ("Australia/Sydney", 0.05),
)


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    unit_price_cents: int
    popularity: float

    @property
    def unit_price(self) -> str:
        """Price as a decimal literal, e.g. ``"19.99"``, so JSON never carries float noise."""
        return f"{self.unit_price_cents // 100}.{self.unit_price_cents % 100:02d}"


PRODUCT_CATEGORIES: tuple[str, ...] = (
    "Electronics",
    "Home & Kitchen",
    "Apparel",
    "Books",
    "Sports & Outdoors",
    "Beauty",
)

PRODUCTS: tuple[Product, ...] = (
    Product("p001", "Wireless Earbuds Pro", "Electronics", 12999, 6.0),
    Product("p002", "USB-C Fast Charger 65W", "Electronics", 3499, 8.0),
    Product("p003", "Noise-Cancelling Headphones", "Electronics", 24900, 3.0),
    Product("p004", "Smart Watch Series 5", "Electronics", 29900, 2.0),
    Product("p005", "Portable SSD 1TB", "Electronics", 10999, 3.5),
    Product("p006", "Mechanical Keyboard", "Electronics", 8950, 2.5),
    Product("p007", "4K Webcam", "Electronics", 6999, 2.0),
    Product("p008", "Bluetooth Speaker Mini", "Electronics", 3999, 4.0),
    Product("p009", "Pour-Over Coffee Set", "Home & Kitchen", 4500, 3.0),
    Product("p010", "Cast Iron Skillet 12in", "Home & Kitchen", 3899, 3.5),
    Product("p011", "Chef's Knife 8in", "Home & Kitchen", 7900, 2.5),
    Product("p012", "Linen Duvet Cover", "Home & Kitchen", 13900, 1.5),
    Product("p013", "Scented Candle Trio", "Home & Kitchen", 2999, 5.0),
    Product("p014", "Air Fryer 5L", "Home & Kitchen", 11999, 2.5),
    Product("p015", "Glass Storage Containers (10)", "Home & Kitchen", 3299, 4.0),
    Product("p016", "Merino Crew Sweater", "Apparel", 8900, 3.0),
    Product("p017", "Organic Cotton T-Shirt", "Apparel", 2400, 9.0),
    Product("p018", "Rain Jacket", "Apparel", 15900, 1.8),
    Product("p019", "Everyday Sneakers", "Apparel", 9500, 4.0),
    Product("p020", "Wool Socks (3-pack)", "Apparel", 1999, 7.0),
    Product("p021", "Slim Fit Chinos", "Apparel", 6900, 3.0),
    Product("p022", "Baseball Cap", "Apparel", 2500, 3.5),
    Product("p023", "The Pragmatic Programmer", "Books", 4499, 2.5),
    Product("p024", "Designing Data-Intensive Applications", "Books", 5299, 2.5),
    Product("p025", "A Field Guide to Birds", "Books", 2299, 1.5),
    Product("p026", "The Art of Fermentation", "Books", 3500, 1.2),
    Product("p027", "Kids' Picture Book Box Set", "Books", 2999, 2.0),
    Product("p028", "Yoga Mat 6mm", "Sports & Outdoors", 3900, 4.0),
    Product("p029", "Adjustable Dumbbells", "Sports & Outdoors", 19900, 1.5),
    Product("p030", "Trail Running Vest", "Sports & Outdoors", 8900, 1.2),
    Product("p031", "Insulated Water Bottle", "Sports & Outdoors", 2800, 8.0),
    Product("p032", "Camping Hammock", "Sports & Outdoors", 5900, 1.5),
    Product("p033", "Resistance Bands Set", "Sports & Outdoors", 2199, 3.5),
    Product("p034", "Hydrating Face Serum", "Beauty", 3400, 4.5),
    Product("p035", "Mineral Sunscreen SPF 50", "Beauty", 1899, 6.0),
    Product("p036", "Shampoo Bar", "Beauty", 1200, 4.0),
    Product("p037", "Electric Toothbrush", "Beauty", 7999, 2.0),
    Product("p038", "Beard Trimmer", "Beauty", 5499, 1.5),
    Product("p039", "Lip Balm (4-pack)", "Beauty", 899, 6.0),
    Product("p040", "E-Reader Paperwhite", "Electronics", 14999, 1.8),
)


def products_document() -> dict[str, object]:
    """The product catalog as written to ``raw/catalog/products.json``."""
    return {
        "schema_version": 1,
        "currency": "USD",
        "products": [
            {
                "product_id": product.product_id,
                "name": product.name,
                "category": product.category,
                "unit_price": float(product.unit_price),
            }
            for product in PRODUCTS
        ],
    }
