"""Given and family names by origin, as written in their usual romanized form.

Each list is ordered roughly from most to least common, and sampling weighs it by rank
(a Zipf-like law), so common names collide as often as they do in real files. Names keep
their diacritics (NFC); hyphens and spaces inside a name are part of it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class NameTable:
    """The names of one origin: given names by sex and family names.

    ``compound_share`` is the fraction of households whose family name joins two family
    names with a space (Hispanic paternal and maternal surnames: "García López").
    """

    male: tuple[str, ...]
    female: tuple[str, ...]
    family: tuple[str, ...]
    compound_share: float = 0.0


def _names(text: str) -> tuple[str, ...]:
    return tuple(unicodedata.normalize("NFC", name.strip()) for name in text.split(";"))


ANGLO: Final = NameTable(
    male=_names(
        "James; John; Robert; Michael; William; David; Richard; Joseph; Thomas; Charles;"
        "Christopher; Daniel; Matthew; Anthony; Mark; Donald; Steven; Paul; Andrew; Joshua;"
        "Kenneth; Kevin; Brian; George; Timothy; Ronald; Jason; Edward; Jeffrey; Ryan"
    ),
    female=_names(
        "Mary; Patricia; Jennifer; Linda; Elizabeth; Barbara; Susan; Jessica; Sarah; Karen;"
        "Lisa; Nancy; Betty; Margaret; Sandra; Ashley; Kimberly; Emily; Donna; Michelle;"
        "Carol; Amanda; Dorothy; Melissa; Deborah; Stephanie; Rebecca; Mary Ann; Laura;"
        "Anne-Marie"
    ),
    family=_names(
        "Smith; Johnson; Williams; Brown; Jones; Miller; Davis; Wilson; Anderson; Taylor;"
        "Thomas; Moore; Jackson; Martin; Thompson; White; Harris; Clark; Lewis; Robinson;"
        "Walker; Young; Allen; King; Wright; Scott; Hill; Green; Adams; Baker; Nelson;"
        "Carter; Mitchell; Roberts; Campbell; Evans; Turner; Parker; Collins; Edwards;"
        "Stewart; Morris; Murphy; Cook; Rogers; O'Brien; O'Connor; McDonald; MacKenzie;"
        "St. John"
    ),
)

HISPANIC: Final = NameTable(
    male=_names(
        "José; Juan; Luis; Carlos; Jesús; Miguel; Francisco; Jorge; Antonio; Alejandro;"
        "Manuel; Pedro; Ricardo; Fernando; Javier; Rafael; Sergio; Andrés; Raúl; Óscar;"
        "Héctor; Ramón; Joaquín; José Luis; Juan Carlos"
    ),
    female=_names(
        "María; Guadalupe; Ana; Rosa; Carmen; Sofía; Lucía; Isabel; Elena; Verónica;"
        "Gabriela; Adriana; Mónica; Patricia; Leticia; Claudia; Alejandra; Beatriz; Inés;"
        "María José; Ximena; Valentina; Camila; Marisol; Yolanda"
    ),
    family=_names(
        "García; Rodríguez; Martínez; Hernández; López; González; Pérez; Sánchez; Ramírez;"
        "Torres; Flores; Rivera; Gómez; Díaz; Reyes; Morales; Cruz; Ortiz; Gutiérrez;"
        "Chávez; Ramos; Ruiz; Álvarez; Mendoza; Vásquez; Castillo; Jiménez; Moreno; Romero;"
        "Herrera; Medina; Aguilar; Vargas; Guzmán; Muñoz; Castro; Fernández; Méndez;"
        "Salazar; Soto; Delgado; Peña; Ríos; Núñez; Ibarra; Domínguez; De la Cruz; Del Río"
    ),
    compound_share=0.35,
)

CHINESE: Final = NameTable(
    male=_names(
        "Wei; Jian; Hao; Ming; Lei; Jun; Tao; Bo; Qiang; Yong; Jie; Peng; Chao; Bin; Gang;"
        "Hui; Long; Xiang; Zhiwei; Jianguo; Haoran; Yuxuan; Zihao; Kai; Cheng"
    ),
    female=_names(
        "Fang; Jing; Li Na; Xiu Ying; Yan; Ling; Xin; Yu; Min; Lan; Mei; Hong; Juan; Qian;"
        "Ying; Xiaoling; Yating; Shu Fen; Wen; Na; Li; Jia; Zhen; Huan; Lihua"
    ),
    family=_names(
        "Wang; Li; Zhang; Liu; Chen; Yang; Huang; Zhao; Wu; Zhou; Xu; Sun; Ma; Zhu; Hu; Guo;"
        "He; Lin; Gao; Luo; Zheng; Liang; Xie; Song; Tang; Han; Feng; Deng; Cao; Peng; Zeng;"
        "Xiao; Tian; Dong; Pan; Yuan; Cai; Jiang; Wong; Chan; Leung; Cheung; Lau; Ng; Chow;"
        "Tsang; Yip; Ouyang"
    ),
)

KOREAN: Final = NameTable(
    male=_names(
        "Min-jun; Seo-jun; Do-yun; Ji-hoon; Ha-jun; Joon-young; Sung-min; Hyun-woo; Jae-won;"
        "Dong-hyun; Young-ho; Sang-woo; Jin-ho; Kyung-soo; Tae-yang; Woo-jin; Seung-hyun;"
        "Jung-ho; Min-ho; Chul-soo; Jae-hyun; Yong-jun; Hyun-jin; Kwang-soo; Byung-chul"
    ),
    female=_names(
        "Seo-yeon; Ha-eun; Ji-woo; Seo-ah; Min-seo; Ji-yoon; Soo-ah; Ye-jin; Hye-jin;"
        "Eun-ji; Ji-hye; Mi-kyung; Su-jin; Young-hee; Hyun-joo; Jin-young; Yoo-na; Da-eun;"
        "So-yeon; Eun-young; Mi-young; Hae-won; Ji-min; Soo-jin; Na-yeon"
    ),
    family=_names(
        "Kim; Lee; Park; Choi; Jung; Kang; Cho; Yoon; Jang; Lim; Han; Oh; Seo; Shin; Kwon;"
        "Hwang; Ahn; Song; Yoo; Hong; Jeon; Ko; Moon; Yang; Son; Bae; Baek; Heo; Nam; Shim;"
        "Noh; Ha; Kwak; Sung; Cha; Joo; Woo; Koo; Min; Ryu; Na; Jin; Namgung; Jegal"
    ),
)

VIETNAMESE: Final = NameTable(
    male=_names(
        "Minh; Anh; Hùng; Dũng; Tuấn; Nam; Hải; Long; Phong; Thắng; Quang; Huy; Khoa; Bảo;"
        "Đức; Hiếu; Trung; Sơn; Tài; Việt; Văn Minh; Văn Hùng; Quốc Bảo; Thành; Phúc"
    ),
    female=_names(
        "Lan; Hương; Thảo; Linh; Trang; Mai; Ngọc; Hà; Hằng; Phương; Thủy; Yến; Vy; Nhung;"
        "Tuyết; Hoa; Loan; Thu; Diệp; Nga; Thị Lan; Thị Hương; Thị Mai; Ngọc Anh; Kim Chi"
    ),
    family=_names(
        "Nguyễn; Trần; Lê; Phạm; Hoàng; Huỳnh; Phan; Vũ; Võ; Đặng; Bùi; Đỗ; Hồ; Ngô; Dương;"
        "Lý; Đào; Đoàn; Vương; Trịnh; Trương; Lâm; Phùng; Mai; Tô; Hà; Tạ; Quách; Lương;"
        "Cao; Châu; Thái; Tăng; La; Lưu; Kiều; Triệu; Đinh; Diệp; Thân; Nghiêm; Tôn"
    ),
)

SOUTH_ASIAN: Final = NameTable(
    male=_names(
        "Aarav; Vivaan; Aditya; Arjun; Rohan; Rahul; Amit; Sanjay; Vijay; Raj; Anil; Sunil;"
        "Ravi; Krishna; Deepak; Manish; Suresh; Ramesh; Harpreet; Gurpreet; Imran; Faisal;"
        "Venkatesh; Srinivas; Abhishek"
    ),
    female=_names(
        "Priya; Ananya; Aditi; Pooja; Neha; Kavya; Divya; Lakshmi; Sunita; Anjali; Deepika;"
        "Shreya; Meera; Sita; Geeta; Radha; Nisha; Asha; Rekha; Swati; Simran; Manpreet;"
        "Farzana; Nusrat; Padmavathi"
    ),
    family=_names(
        "Patel; Shah; Singh; Kumar; Sharma; Gupta; Reddy; Rao; Iyer; Nair; Menon; Desai;"
        "Mehta; Joshi; Chopra; Kapoor; Malhotra; Agarwal; Bhatt; Chaudhary; Das; Ghosh;"
        "Mukherjee; Banerjee; Chatterjee; Khan; Hussain; Ahmed; Pillai; Naidu; Verma;"
        "Mishra; Pandey; Trivedi; Kulkarni; Jain; Sinha; Bose; Sandhu; Dhillon; Grewal;"
        "Rahman; Chowdhury; Venkataraman"
    ),
)

SLAVIC: Final = NameTable(
    male=_names(
        "Łukasz; Piotr; Krzysztof; Tomasz; Paweł; Michał; Marcin; Jakub; Andrzej; Wojciech;"
        "Grzegorz; Mateusz; Dmitri; Sergei; Ivan; Alexei; Nikolai; Vladimir; Oleksandr;"
        "Bohdan; Jiří; Tomáš; Miloš; Dragan; Stanisław"
    ),
    female=_names(
        "Anna; Katarzyna; Małgorzata; Agnieszka; Magdalena; Joanna; Zofia; Ewa; Olga;"
        "Natalia; Tatiana; Svetlana; Irina; Yelena; Oksana; Jelena; Milena; Zuzana; Petra;"
        "Dorota; Żaneta; Bożena; Ludmila; Věra; Jadwiga"
    ),
    family=_names(
        "Nowak; Kowalski; Wiśniewski; Wójcik; Kowalczyk; Kamiński; Lewandowski; Zieliński;"
        "Szymański; Woźniak; Dąbrowski; Kozłowski; Jankowski; Mazur; Kwiatkowski; Krawczyk;"
        "Piotrowski; Grabowski; Pawłowski; Michalski; Król; Wieczorek; Jabłoński; Wróbel;"
        "Ivanov; Petrov; Smirnov; Kuznetsov; Popov; Sokolov; Novak; Horvat; Kovačević;"
        "Jovanović; Petrović; Nikolić; Kovalenko; Shevchenko; Bondarenko; Dvořák; Svoboda;"
        "Novotný; Černý; Procházka"
    ),
)

ARABIC: Final = NameTable(
    male=_names(
        "Mohammed; Ahmed; Ali; Omar; Youssef; Khalid; Hassan; Hussein; Ibrahim; Mahmoud;"
        "Mustafa; Tariq; Karim; Samir; Walid; Bilal; Hamza; Ziad; Rami; Nabil; Abdullah;"
        "Abdel Aziz; Fadi; Jamal; Salim"
    ),
    female=_names(
        "Fatima; Aisha; Maryam; Layla; Noor; Zainab; Huda; Rania; Salma; Yasmin; Leila;"
        "Amira; Dina; Hana; Lina; Mona; Rana; Sara; Nadia; Samira; Reem; Ghada; Lubna;"
        "Nour El Houda; Suha"
    ),
    family=_names(
        "Haddad; Khoury; Mansour; Nasser; Saleh; Hamdan; Abdullah; Ibrahim; Youssef;"
        "Hussein; Ali; Mahmoud; Khalil; Aziz; Farah; Said; Salem; Jaber; Habib; Hakim;"
        "Darwish; Othman; Suleiman; Karim; Masri; Shami; Halabi; Najjar; Sabbagh; Awad;"
        "Barakat; Bitar; Fakhoury; Al-Hassan; Al-Amin; El-Sayed; Abdel-Rahman; Abu-Ghazaleh;"
        "Al-Rashid; Ben Ali"
    ),
)

AFRICAN: Final = NameTable(
    male=_names(
        "Chinedu; Emeka; Oluwaseun; Adebayo; Tunde; Kwame; Kofi; Kwabena; Yaw; Mamadou;"
        "Ousmane; Abdoulaye; Moussa; Ibrahima; Cheikh; Tesfaye; Dawit; Yohannes; Samuel;"
        "Abdi; Olumide; Chukwuemeka; Babajide; Kelechi; Mulugeta"
    ),
    female=_names(
        "Ngozi; Chioma; Adaeze; Folake; Funmilayo; Ama; Akosua; Abena; Efua; Aminata;"
        "Fatou; Mariama; Awa; Aïssatou; Hiwot; Selam; Meron; Tigist; Wanjiru; Amina;"
        "Oluwakemi; Nkechi; Yetunde; Adjoa; Halima"
    ),
    family=_names(
        "Okafor; Okonkwo; Adeyemi; Adebayo; Afolabi; Balogun; Chukwu; Eze; Nwosu; Obi;"
        "Ogunleye; Mensah; Owusu; Boateng; Asante; Appiah; Osei; Agyeman; Diallo; Traoré;"
        "Koné; Keïta; Touré; Camara; Sow; Bah; Ndiaye; Diop; Fall; Nkosi; Dlamini; Kamau;"
        "Mwangi; Otieno; Tesfaye; Bekele; Haile; Girma; Abebe; Warsame; Osman; Oyelaran"
    ),
)

ORIGINS: Final[dict[str, NameTable]] = {
    "anglo": ANGLO,
    "hispanic": HISPANIC,
    "chinese": CHINESE,
    "korean": KOREAN,
    "vietnamese": VIETNAMESE,
    "south_asian": SOUTH_ASIAN,
    "slavic": SLAVIC,
    "arabic": ARABIC,
    "african": AFRICAN,
}
"""Name tables by origin, in a fixed order (the order is part of the generator's output)."""

ORIGIN_WEIGHTS: Final[dict[str, float]] = {
    "anglo": 0.50,
    "hispanic": 0.19,
    "chinese": 0.04,
    "korean": 0.025,
    "vietnamese": 0.025,
    "south_asian": 0.05,
    "slavic": 0.07,
    "arabic": 0.04,
    "african": 0.06,
}
"""Share of households of each origin."""
