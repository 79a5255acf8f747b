"""Vocabularies for realistic synthetic Chinese names, firm names and addresses (vectorized)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# The most common surnames, weighted roughly by their share of the population.
SURNAMES = list(
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
)
SURNAME_WEIGHTS = np.array([
    7.1, 7.0, 6.8, 5.4, 4.5, 3.1, 2.3, 2.1, 1.9, 1.9, 1.8, 1.5, 1.3, 1.2, 1.2, 1.2, 1.2,
    1.1, 1.1, 1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.6, 0.6, 0.6, 0.6,
    0.6, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4,
])  # fmt: skip
GIVEN = list(
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉梅文斌浩宇欣怡子涵梓轩雨婷佳琪思远晨阳博"
)
TRADE = list(
    "华鑫泰恒源盛德瑞博信达联创科宏兴隆丰汇通金益和昌祥瑞安康力诚嘉正天新海宇卓远航中齐鲁泉城明湖舜耕历山大明"
)
INDUSTRY_WORDS: dict[str, list[str]] = {
    "农林牧渔业": ["农业科技", "生态农业", "养殖"],
    "制造业": ["机械制造", "新材料", "电子科技", "精密制造"],
    "建筑业": ["建筑工程", "建设工程", "装饰工程"],
    "批发和零售业": ["商贸", "贸易", "医药连锁", "超市"],
    "交通运输仓储和邮政业": ["物流", "运输", "供应链管理"],
    "住宿和餐饮业": ["餐饮管理", "酒店管理"],
    "信息传输软件和信息技术服务业": ["信息技术", "软件", "网络科技", "数据科技"],
    "金融业": ["融资租赁", "投资管理"],
    "房地产业": ["置业", "房地产开发", "物业管理"],
    "租赁和商务服务业": ["企业管理咨询", "人力资源", "广告"],
    "科学研究和技术服务业": ["检测技术", "工程设计", "生物科技"],
    "居民服务修理和其他服务业": ["家政服务", "汽车维修"],
    "文化体育和娱乐业": ["文化传媒", "体育发展"],
}
SUFFIXES = ["有限公司", "有限公司", "有限公司", "有限责任公司", "股份有限公司"]
STREETS = [
    "泉城路",
    "经十路",
    "解放路",
    "历山路",
    "山大路",
    "工业南路",
    "二环东路",
    "旅游路",
    "花园路",
    "北园大街",
]


def pick(
    rng: np.random.Generator, words: list[str], n: int, weights: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.str_]:
    """``n`` words drawn from ``words`` (with ``weights`` when given)."""
    p = None if weights is None else weights / weights.sum()
    return np.asarray(words)[rng.choice(len(words), size=n, p=p)]


def person_names(rng: np.random.Generator, n: int) -> list[str]:
    """Surname plus one or two given-name characters."""
    surname = pick(rng, SURNAMES, n, SURNAME_WEIGHTS)
    first = pick(rng, GIVEN, n)
    second = np.where(rng.random(n) < 0.7, pick(rng, GIVEN, n), "")
    return np.char.add(np.char.add(surname, first), second).tolist()  # type: ignore[no-any-return]


def firm_names(rng: np.random.Generator, industries: npt.NDArray[np.str_]) -> list[str]:
    """ "济南" + a two-character trade name + an industry word + a legal-form suffix."""
    n = len(industries)
    trade = np.char.add(pick(rng, TRADE, n), pick(rng, TRADE, n))
    words = np.empty(n, dtype=object)
    for industry, options in INDUSTRY_WORDS.items():
        mask = industries == industry
        words[mask] = pick(rng, options, int(mask.sum()))
    words[[w is None for w in words]] = "商贸"
    base = np.char.add(np.char.add("济南", trade), words.astype(str))
    return np.char.add(base, pick(rng, SUFFIXES, n)).tolist()  # type: ignore[no-any-return]


def addresses(rng: np.random.Generator, districts: npt.NDArray[np.str_]) -> list[str]:
    """A street address in the district."""
    n = len(districts)
    numbers = rng.integers(1, 999, n).astype(str)
    street = np.char.add(np.char.add(np.char.add("济南市", districts), pick(rng, STREETS, n)), numbers)
    return np.char.add(street, "号").tolist()  # type: ignore[no-any-return]
